//! Which handlers an event goes to: per handler, a set of environments and event filters such as
//! `receive.completed`, `send.*`, `*.failed` or `*`.

/// One `type.event` pattern; `*` in a part matches anything, and a lone `*` matches every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    event_type: Option<String>,
    event: Option<String>,
}

/// Why a pattern is not a filter; the message quotes the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pattern:?}: {reason}")]
pub struct InvalidFilter {
    pub pattern: String,
    pub reason: &'static str,
}

impl EventFilter {
    pub fn parse(pattern: &str) -> Result<Self, InvalidFilter> {
        let invalid = |reason| InvalidFilter {
            pattern: pattern.to_owned(),
            reason,
        };
        let part = |p: &str| -> Result<Option<String>, InvalidFilter> {
            match p {
                "*" => Ok(None),
                "" => Err(invalid("empty part")),
                p if p.contains('*') => Err(invalid("`*` must stand alone in a part")),
                p => Ok(Some(p.to_owned())),
            }
        };
        match pattern.split_once('.') {
            None if pattern == "*" => Ok(Self {
                event_type: None,
                event: None,
            }),
            None => Err(invalid("expected `type.event`, `type.*` or `*`")),
            Some((_, e)) if e.contains('.') => Err(invalid("more than one `.`")),
            Some((t, e)) => Ok(Self {
                event_type: part(t)?,
                event: part(e)?,
            }),
        }
    }

    pub fn matches(&self, event_type: &str, event: &str) -> bool {
        self.event_type.as_deref().is_none_or(|t| t == event_type)
            && self.event.as_deref().is_none_or(|e| e == event)
    }
}

/// A handler's subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `None`: every environment.
    pub environments: Option<Vec<String>>,
    pub filters: Vec<EventFilter>,
}

impl Route {
    /// Every event of every environment.
    pub fn all() -> Self {
        Self {
            environments: None,
            filters: vec![EventFilter {
                event_type: None,
                event: None,
            }],
        }
    }

    pub fn matches(&self, environment: &str, event_type: &str, event: &str) -> bool {
        self.environments
            .as_ref()
            .is_none_or(|envs| envs.iter().any(|e| e == environment))
            && self.filters.iter().any(|f| f.matches(event_type, event))
    }
}

/// The routes of every handler, by name: what ingest consults to write outbox rows. It needs no
/// handler services, so an ingest-only replica can route for dispatchers running elsewhere.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    routes: Vec<(String, Route)>,
}

impl Routing {
    pub fn new(routes: Vec<(String, Route)>) -> Self {
        Self { routes }
    }

    /// Every handler's name.
    pub fn names(&self) -> Vec<String> {
        self.routes.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Names of the handlers subscribed to this event.
    pub fn matching(&self, environment: &str, event_type: &str, event: &str) -> Vec<String> {
        self.routes
            .iter()
            .filter(|(_, route)| route.matches(environment, event_type, event))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(envs: Option<&[&str]>, filters: &[&str]) -> Route {
        Route {
            environments: envs.map(|e| e.iter().map(|s| s.to_string()).collect()),
            filters: filters
                .iter()
                .map(|f| EventFilter::parse(f).expect("valid"))
                .collect(),
        }
    }

    #[test]
    fn filters_match_exactly_by_type_by_event_or_everything() {
        let r = route(None, &["receive.completed", "send.*", "*.failed"]);
        assert!(r.matches("production", "receive", "completed"));
        assert!(r.matches("production", "send", "succeeded"));
        assert!(r.matches("production", "receive", "failed"));
        assert!(!r.matches("production", "receive", "generated"));
        assert!(!r.matches("production", "test", "created"));
        assert!(route(None, &["*"]).matches("x", "anything", "new"));
    }

    #[test]
    fn environments_restrict_a_route() {
        let r = route(Some(&["production"]), &["*"]);
        assert!(r.matches("production", "send", "failed"));
        assert!(!r.matches("staging", "send", "failed"));
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in ["", "send", "send.", ".x", "se*nd.x", "a.b.c"] {
            assert!(EventFilter::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn routing_names_every_matching_handler_in_order() {
        let routing = Routing::new(vec![
            (
                "ledger".into(),
                route(Some(&["production"]), &["receive.completed"]),
            ),
            ("audit".into(), route(None, &["*"])),
            ("alerts".into(), route(None, &["*.failed"])),
        ]);
        assert_eq!(
            routing.matching("production", "receive", "completed"),
            ["ledger", "audit"]
        );
        assert_eq!(
            routing.matching("staging", "send", "failed"),
            ["audit", "alerts"]
        );
    }
}
