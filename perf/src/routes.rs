//! `ringway-perf routes`: writes a Ringway config with many routes, the shape large users
//! carry (Kong and APISIX deployments of 10k-50k routes): `--hosts` exact hosts, each with its
//! share of prefix and exact routes and one route in a hundred a regex, all proxied to one
//! upstream. With `--nginx` it writes the same routes as nginx `location` blocks instead, for
//! side-by-side figures (`nginx -t`, reload time, RSS).
//!
//! Route `i` has the host `h{i % hosts}.example.com` and the path `/r{i}/...`; `--rename K`
//! names the routes `route-K-{i}` instead of `route-{i}`, so that successive configs rename
//! every route (what a reload that renames routes costs). Request paths that reach each route
//! are listed by `--list-paths` (one `HOST PATH` line per route), and `--touch ADDR` sends one
//! request to every route. A last route, `bench`, takes any host and path (what a load
//! generator addressing 127.0.0.1 reaches).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// Number of routes.
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Number of distinct exact hosts the routes are spread over.
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    /// The listener's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The upstream's one endpoint.
    #[arg(long, default_value = "127.0.0.1:9000")]
    upstream: SocketAddr,
    /// The admin listener's address (omitted: no admin listener).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// The control socket's path.
    #[arg(long, default_value = "/tmp/ringway-routes.sock")]
    control: String,
    /// `[runtime] shards`.
    #[arg(long, default_value = "1")]
    shards: String,
    /// `[metrics] interval`.
    #[arg(long, default_value = "1s")]
    metrics_interval: String,
    /// A number K: route names become `route-K-{i}` instead of `route-{i}` (each K renames
    /// every route, or the first --rename-count).
    #[arg(long, value_name = "K")]
    rename: Option<u64>,
    /// Only the first N routes get the new names of `--rename`; the rest keep `route-{i}`.
    #[arg(long)]
    rename_count: Option<usize>,
    /// Write an nginx config with the same routes as `location` blocks instead.
    #[arg(long)]
    nginx: bool,
    /// Write one `HOST PATH` line per route instead: a request that reaches it.
    #[arg(long)]
    list_paths: bool,
    /// Instead of writing anything, send one GET to every route, in order, over one
    /// keep-alive connection to this address; prints how many got a 2xx (exit 1 if not all).
    #[arg(long)]
    touch: Option<SocketAddr>,
}

/// What route `i` matches.
enum Kind {
    Prefix,
    Exact,
    Regex,
}

fn kind(i: usize) -> Kind {
    if i % 100 == 99 {
        Kind::Regex
    } else if i % 3 == 1 {
        Kind::Exact
    } else {
        Kind::Prefix
    }
}

fn host(args: &Args, i: usize) -> String {
    format!("h{}.example.com", i % args.hosts.max(1))
}

pub fn run(args: Args) -> Result<()> {
    if let Some(addr) = args.touch {
        return touch(&args, addr);
    }
    let text = if args.list_paths {
        paths(&args)
    } else if args.nginx {
        nginx(&args)
    } else {
        ringway(&args)
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // `| head` has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn route_name(args: &Args, i: usize) -> String {
    match args.rename {
        Some(k) if args.rename_count.is_none_or(|n| i < n) => format!("route-{k}-{i}"),
        _ => format!("route-{i}"),
    }
}

fn ringway(args: &Args) -> String {
    let mut out = String::with_capacity(args.routes * 120 + 1024);
    let shards = if args.shards == "auto" {
        "\"auto\"".to_owned()
    } else {
        args.shards.clone()
    };
    let _ = writeln!(
        out,
        "# {} routes over {} hosts, written by `ringway-perf routes`.\n\n\
         [runtime]\nshards = {shards}\n\n\
         [control]\nsocket = \"{}\"\n\n\
         [metrics]\ninterval = \"{}\"\n",
        args.routes, args.hosts, args.control, args.metrics_interval
    );
    if let Some(admin) = args.admin {
        let _ = writeln!(out, "[admin]\nlisten = \"{admin}\"\n");
    }
    let _ = writeln!(
        out,
        "[[listeners]]\nname = \"public\"\nlisten = \"{}\"\n\n\
         [[upstreams]]\nname = \"app\"\nendpoints = [{{ address = \"{}\" }}]\n",
        args.listen, args.upstream
    );
    for i in 0..args.routes {
        let _ = write!(
            out,
            "[[routes]]\nname = \"{}\"\nhost = \"{}\"\n",
            route_name(args, i),
            host(args, i)
        );
        let _ = match kind(i) {
            Kind::Prefix => writeln!(out, "path_prefix = \"/r{i}/\""),
            Kind::Exact => writeln!(out, "path_exact = \"/r{i}/item\""),
            Kind::Regex => writeln!(out, "path_regex = \"/r{i}/[0-9]+/detail\""),
        };
        let _ = writeln!(out, "upstream = \"app\"\n");
    }
    // Any host, any path: what a load generator addressing 127.0.0.1 reaches, after every
    // host tier has been looked at.
    let _ = writeln!(
        out,
        "[[routes]]\nname = \"bench\"\npath_prefix = \"/\"\nupstream = \"app\""
    );
    out
}

fn nginx(args: &Args) -> String {
    let mut out = String::with_capacity(args.routes * 100 + 1024);
    let _ = writeln!(
        out,
        "# {} locations over {} hosts, written by `ringway-perf routes --nginx`.\n\
         worker_processes 1;\ndaemon off;\nerror_log stderr error;\npid /tmp/ringway-routes-nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  server_names_hash_bucket_size 64;\n\
         upstream app {{ server {}; keepalive 64; }}",
        args.routes, args.hosts, args.upstream
    );
    let hosts = args.hosts.max(1);
    for h in 0..hosts {
        let _ = writeln!(
            out,
            "  server {{\n    listen {};\n    server_name h{h}.example.com;",
            args.listen
        );
        for i in (h..args.routes).step_by(hosts) {
            let _ = match kind(i) {
                Kind::Prefix => write!(out, "    location /r{i}/ {{"),
                Kind::Exact => write!(out, "    location = /r{i}/item {{"),
                Kind::Regex => write!(out, "    location ~ ^/r{i}/[0-9]+/detail$ {{"),
            };
            let _ = writeln!(
                out,
                " proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}"
            );
        }
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(
        out,
        "  server {{\n    listen {} default_server;\n    location / {{ proxy_pass http://app; \
         proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}",
        args.listen
    );
    out
}

/// A path that route `i` matches.
fn path(i: usize) -> String {
    match kind(i) {
        Kind::Prefix => format!("/r{i}/x"),
        Kind::Exact => format!("/r{i}/item"),
        Kind::Regex => format!("/r{i}/7/detail"),
    }
}

fn paths(args: &Args) -> String {
    let mut out = String::with_capacity(args.routes * 40);
    for i in 0..args.routes {
        let _ = writeln!(out, "{} {}", host(args, i), path(i));
    }
    out
}

/// One request per route over keep-alive connections (a new one when the server closes,
/// as nginx does after `keepalive_requests`); responses framed by content-length (what the
/// stub and the gateways send).
fn touch(args: &Args, addr: SocketAddr) -> Result<()> {
    let (mut ok, mut failed) = (0usize, 0usize);
    let mut conn: Option<Conn> = None;
    for i in 0..args.routes {
        let request = format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\n\r\n",
            path(i),
            host(args, i)
        );
        let mut answer = None;
        // A kept connection may have been closed by the server meanwhile: one more try on a
        // new one.
        for _ in 0..2 {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => conn.insert(Conn::open(addr)?),
            };
            match c.exchange(&request)? {
                Some(reply) => {
                    answer = Some(reply);
                    break;
                }
                None => conn = None,
            }
        }
        let Some((status, close)) = answer else {
            anyhow::bail!("no answer from {addr} for route {i}");
        };
        if close {
            conn = None;
        }
        if (200..300).contains(&status) {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    println!("{ok} routes answered 2xx, {failed} did not");
    if failed > 0 {
        anyhow::bail!("{failed} routes did not answer 2xx");
    }
    Ok(())
}

/// A client connection of [`touch`].
struct Conn {
    writer: std::net::TcpStream,
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            writer: stream.try_clone()?,
            reader: std::io::BufReader::new(stream),
        })
    }

    /// Sends `request` and reads the response: its status and whether the server closes the
    /// connection after it; `None` when the connection was closed before a response.
    fn exchange(&mut self, request: &str) -> Result<Option<(u16, bool)>> {
        use std::io::{BufRead, Read};
        if self.writer.write_all(request.as_bytes()).is_err() {
            return Ok(None);
        }
        let mut line = String::new();
        if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
            return Ok(None);
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (mut length, mut close) = (0u64, false);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                anyhow::bail!("connection closed inside a response head");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.trim().eq_ignore_ascii_case("close");
                }
            }
        }
        std::io::copy(&mut (&mut self.reader).take(length), &mut std::io::sink())?;
        Ok(Some((status, close)))
    }
}
