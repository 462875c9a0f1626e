//! An epoch: one validated config compiled once, immutable, shared by every shard.

use std::sync::Arc;

use ringway_config::{Config, RouteAction};

use crate::http::h1::reason_phrase;
use crate::router::Router;
use crate::upstream::balance::{hash_table, Maglev};

pub struct Epoch {
    pub id: u64,
    pub config: Config,
    pub router: Router,
    /// What each route does, by route id.
    pub actions: Vec<Action>,
    /// The Maglev table of each `"hash"` upstream, by upstream index (`None` for the others):
    /// built here once, shared by every shard's balancer.
    pub hash_tables: Vec<Option<Arc<Maglev>>>,
}

pub enum Action {
    /// Proxy to `config.upstreams[upstream]`.
    Proxy { upstream: usize },
    /// A direct response, serialised once here.
    Local(LocalResponse),
    Redirect {
        status: u16,
        location: String,
        keep_path: bool,
    },
}

/// A complete response (head and body) without its `connection` header, written by appending
/// `connection: close` or nothing before the blank line.
pub struct LocalResponse {
    pub status: u16,
    /// Status line and headers, without the final blank line.
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

impl Epoch {
    pub fn compile(id: u64, config: Config) -> Epoch {
        let listener_names: Vec<String> = config.listeners.iter().map(|l| l.name.clone()).collect();
        let router = Router::new(&config.routes, &listener_names);
        let actions = config
            .routes
            .iter()
            .map(|route| match &route.action {
                RouteAction::Proxy { upstream } => Action::Proxy {
                    upstream: config
                        .upstreams
                        .iter()
                        .position(|u| &u.name == upstream)
                        .expect("validated config: route names an existing upstream"),
                },
                RouteAction::Respond(r) => {
                    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason_phrase(r.status));
                    for (name, value) in &r.headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    head.push_str(&format!("content-length: {}\r\n", r.body.len()));
                    Action::Local(LocalResponse {
                        status: r.status,
                        head: head.into_bytes(),
                        body: r.body.clone().into_bytes(),
                    })
                }
                RouteAction::Redirect(r) => Action::Redirect {
                    status: r.status,
                    location: r.location.clone(),
                    keep_path: r.keep_path,
                },
            })
            .collect();
        let hash_tables = config.upstreams.iter().map(hash_table).collect();
        Epoch {
            id,
            config,
            router,
            actions,
            hash_tables,
        }
    }
}
