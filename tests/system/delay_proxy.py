#!/usr/bin/env python3
"""A TCP proxy that delays every byte by a fixed time in each direction: round-trip time added
between the replicas and PostgreSQL, on a kernel without netem and without a packet filter.

Each direction is a reader that stamps what it reads and a writer that sends it once its time has
come, so the delay is added without holding back what follows (pipelined traffic keeps flowing).
usage: delay_proxy.py LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT ONE_WAY_DELAY_MS
"""
import asyncio
import sys


async def pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def read():
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + delay, data))
        except OSError:
            pass
        finally:
            queue.put_nowait((loop.time() + delay, b""))  # end of stream, passed on in its turn

    async def write():
        try:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    await asyncio.gather(read(), write())


async def main(listen_host, listen_port, upstream_host, upstream_port, delay_ms):
    delay = float(delay_ms) / 1000

    async def accept(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(upstream_host, int(upstream_port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer, delay), pipe(server_reader, client_writer, delay)
        )

    server = await asyncio.start_server(accept, listen_host, int(listen_port))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
