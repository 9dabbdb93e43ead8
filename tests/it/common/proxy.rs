//! A TCP proxy in front of PostgreSQL that a test can cut and restore: a real outage as the app
//! sees it (connections reset, new ones refused) without stopping the shared server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
    /// Reads from the app's side: a query and its reply are one round trip, so every query the
    /// app sends costs at least one read (a proxy-side count of the app's database calls).
    client_reads: Arc<AtomicUsize>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let client_reads = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            target,
            up.clone(),
            connections.clone(),
            client_reads.clone(),
        ));
        Self {
            port,
            up,
            connections,
            accept: accept.abort_handle(),
            client_reads,
        }
    }

    /// How many times the app has sent something to the database so far.
    pub fn client_reads(&self) -> usize {
        self.client_reads.load(Ordering::SeqCst)
    }

    /// Drops every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    client_reads: Arc<AtomicUsize>,
) {
    while let Ok((client, _)) = listener.accept().await {
        if !up.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let reads = client_reads.clone();
        let task = tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(target).await {
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let upstream = async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        match tokio::io::AsyncReadExt::read(&mut from_client, &mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                reads.fetch_add(1, Ordering::SeqCst);
                                let write = &buffer[..n];
                                if tokio::io::AsyncWriteExt::write_all(&mut to_server, write)
                                    .await
                                    .is_err()
                                {
                                    break;
                                }
                            }
                        }
                    }
                };
                let downstream = tokio::io::copy(&mut from_server, &mut to_client);
                tokio::select! {
                    _ = upstream => {}
                    _ = downstream => {}
                }
            }
        });
        connections.lock().unwrap().push(task.abort_handle());
    }
}
