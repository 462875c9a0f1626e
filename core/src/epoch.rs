//! An epoch: one validated config compiled once, immutable, shared by every shard.

use std::sync::Arc;

use ahash::AHashMap;
use ringway_config::{Config, RouteAction};

use crate::http::h1::reason_phrase;
use crate::policy::identity::{Identity, RouteAuth};
use crate::policy::rate_limit::LimiterSpec;
use crate::router::Router;
use crate::tls::{ClientTls, Kept, ServerTls};
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
    /// The rate limiter of each route, by route index (`None`: not rate limited); its id is
    /// hashed here once rather than by every shard.
    pub limiters: Vec<Option<LimiterSpec>>,
    /// The routes with `max_in_flight`, whose in-flight counts shards report.
    pub concurrency_limited: Vec<usize>,
    /// Route indexes by name, for state that shards keep by name.
    pub route_ids: AHashMap<String, usize>,
    /// Upstream indexes by name.
    pub upstream_ids: AHashMap<String, usize>,
    /// Each listener's TLS, by listener index (`None`: plaintext).
    pub listener_tls: Vec<Option<Arc<ServerTls>>>,
    /// Each upstream's TLS, by upstream index (`None`: plaintext).
    pub upstream_tls: Vec<Option<Arc<ClientTls>>>,
    /// Request headers no client may send upstream: every listener's `client_cert_header`,
    /// this epoch's and the running one's (a reload that renames one must not turn the old
    /// name into a header clients can forge while upstreams still trust it).
    pub reserved_headers: Vec<Box<str>>,
    /// The consumers, for every route's `auth`.
    pub identity: Identity,
    /// Each route's `auth` and `acl`, by route index (`None`: open to anyone).
    pub auth: Vec<Option<RouteAuth>>,
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
    /// Compiles `config`, in time linear in its size; run by the control thread, so that a
    /// shard only swaps one `Arc` for another.
    pub fn compile(id: u64, config: Config) -> Result<Epoch, String> {
        Epoch::compile_after(id, config, None)
    }

    /// [`Epoch::compile`] for a reload of `running`: TLS resumption state (ticket keys,
    /// session caches) carries over to listeners and upstreams of the same name. Fails only
    /// when a certificate the loader accepted cannot be used (the message names its file).
    pub fn compile_after(
        id: u64,
        config: Config,
        running: Option<&Epoch>,
    ) -> Result<Epoch, String> {
        let listener_names: Vec<String> = config.listeners.iter().map(|l| l.name.clone()).collect();
        let router = Router::new(&config.routes, &listener_names);
        let upstream_ids = indexes(config.upstreams.iter().map(|u| &u.name));
        let route_ids = indexes(config.routes.iter().map(|r| &r.name));
        let actions = config
            .routes
            .iter()
            .map(|route| match &route.action {
                RouteAction::Proxy { upstream } => Action::Proxy {
                    upstream: *upstream_ids
                        .get(upstream)
                        .expect("validated config: route names an existing upstream"),
                },
                RouteAction::Respond(r) => {
                    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason_phrase(r.status));
                    for (name, value) in &r.headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    // 204 never carries a length (RFC 9110 section 8.6), and a 304's would
                    // describe a representation the gateway does not have; both are bodiless.
                    if r.status != 204 && r.status != 304 {
                        head.push_str(&format!("content-length: {}\r\n", r.body.len()));
                    }
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
        let limiters = config.routes.iter().map(LimiterSpec::of).collect();
        let concurrency_limited = (config.routes.iter().enumerate())
            .filter(|(_, r)| r.max_in_flight.is_some())
            .map(|(i, _)| i)
            .collect();
        let mut kept = Kept::default();
        if let Some(running) = running {
            for (l, tls) in running.config.listeners.iter().zip(&running.listener_tls) {
                if let Some(tls) = tls {
                    kept.listeners.insert(l.name.as_str(), tls);
                }
            }
            for (u, tls) in running.config.upstreams.iter().zip(&running.upstream_tls) {
                if let Some(tls) = tls {
                    kept.upstreams.insert(u.name.as_str(), tls);
                }
            }
        }
        let listener_tls = config
            .listeners
            .iter()
            .map(|l| match &l.tls {
                None => Ok(None),
                Some(tls) => ServerTls::build(tls, kept.listeners.get(l.name.as_str()).copied())
                    .map(|t| Some(Arc::new(t)))
                    .map_err(|e| format!("listener {}: {e}", l.name)),
            })
            .collect::<Result<Vec<_>, String>>()?;
        let upstream_tls = config
            .upstreams
            .iter()
            .map(|u| match &u.tls {
                None => Ok(None),
                Some(tls) => ClientTls::build(
                    tls,
                    kept.upstreams.get(u.name.as_str()).copied(),
                    u.protocol == ringway_config::UpstreamProtocol::H2,
                )
                .map(|t| Some(Arc::new(t)))
                .map_err(|e| format!("upstream {}: {e}", u.name)),
            })
            .collect::<Result<Vec<_>, String>>()?;
        drop(kept);
        // This config's names and the running one's: a renamed header stays the gateway's
        // for one reload, while upstreams may still trust it.
        // The consumer a route's auth found is the gateway's to say, on every route.
        let mut reserved_headers: Vec<Box<str>> =
            vec!["x-consumer".into(), "x-consumer-groups".into()];
        let configs = std::iter::once(&config).chain(running.map(|r| &r.config));
        for l in configs.flat_map(|c| &c.listeners) {
            if let Some(name) = l.tls.as_ref().and_then(|t| t.client_cert_header.as_deref()) {
                if !reserved_headers.iter().any(|r| &**r == name) {
                    reserved_headers.push(name.into());
                }
            }
        }
        let identity = Identity::compile(&config, id);
        let auth = config.routes.iter().map(|r| identity.route(r)).collect();
        Ok(Epoch {
            id,
            identity,
            auth,
            config,
            router,
            actions,
            hash_tables,
            limiters,
            concurrency_limited,
            route_ids,
            upstream_ids,
            listener_tls,
            upstream_tls,
            reserved_headers,
        })
    }
}

/// Each name's position in the list.
fn indexes<'a>(names: impl Iterator<Item = &'a String>) -> AHashMap<String, usize> {
    names
        .enumerate()
        .map(|(i, name)| (name.clone(), i))
        .collect()
}
