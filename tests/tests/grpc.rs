//! gRPC through the gateway, tonic on both sides: the four kinds of call, metadata and
//! trailers intact, `grpc-timeout` as the call's deadline, cancellation both ways, and the
//! gateway's own failures answered as trailers-only gRPC responses with the status a gRPC
//! client can act on (never an HTML or text error page).

use std::time::{Duration, Instant};

use ringway_tests::grpc::{EchoClient, GrpcServer, Msg};
use ringway_tests::h2upstream::{H2Reply, H2Upstream};
use ringway_tests::{
    both_drivers, free_port, h2client, listener_toml, route_toml, upstream_toml, wait_for, Gateway,
};
use tonic::{Code, Request};

const LIMIT: Duration = Duration::from_secs(20);

/// One listener, the gRPC server as an h2 upstream, one route with `route_extra` lines.
fn grpc_toml(server: std::net::SocketAddr, upstream_extra: &str, route_extra: &str) -> String {
    listener_toml("")
        + &upstream_toml(
            "grpc",
            &[(server, 1)],
            &format!("protocol = \"h2\"\n{upstream_extra}"),
        )
        + &route_toml("all", "grpc")
        + route_extra
}

both_drivers!(unary_calls_keep_metadata_status_and_trailers, |driver| {
    let server = GrpcServer::start();
    let gw = Gateway::start(driver, &grpc_toml(server.addr(), "", ""));
    h2client::block_on(LIMIT, async {
        let mut client = EchoClient::connect(gw.addr()).await;
        let mut req = Request::new(Msg::text("hi"));
        req.metadata_mut().insert("x-echo", "abc".parse().unwrap());
        let resp = client.unary(req).await.expect("the call succeeds");
        assert_eq!(resp.metadata().get("x-echo").unwrap(), "abc");
        assert_eq!(resp.get_ref().text, "echo: hi");

        // A service's own error: code, message (percent-encoded on the wire) and metadata
        // arrive as the service sent them.
        let status = client
            .unary(Request::new(Msg::text("fail")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(status.message(), "no such thing: 100% gone");
        assert_eq!(status.metadata().get("x-reason").unwrap(), "test");
    });
    assert_eq!(server.calls(), 2);
});

both_drivers!(server_streaming_delivers_every_message_in_order, |driver| {
    let server = GrpcServer::start();
    let gw = Gateway::start(driver, &grpc_toml(server.addr(), "", ""));
    let texts = h2client::block_on(LIMIT, async {
        let mut client = EchoClient::connect(gw.addr()).await;
        let msg = Msg {
            count: 200,
            ..Msg::default()
        };
        let mut stream = client.count(Request::new(msg)).await.unwrap().into_inner();
        let mut texts = Vec::new();
        while let Some(msg) = stream.message().await.expect("a message or the end") {
            texts.push(msg.text);
        }
        texts
    });
    let expected: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    assert_eq!(texts, expected);
});

both_drivers!(client_streaming_collects_every_message, |driver| {
    let server = GrpcServer::start();
    let gw = Gateway::start(driver, &grpc_toml(server.addr(), "", ""));
    let joined = h2client::block_on(LIMIT, async {
        let mut client = EchoClient::connect(gw.addr()).await;
        let msgs = tokio_stream::iter((0..50).map(|i| Msg::text(&format!("m{i}"))));
        client.collect(msgs).await.unwrap().into_inner().text
    });
    let expected: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(joined, expected.join(","));
});

both_drivers!(bidirectional_streaming_is_full_duplex, |driver| {
    // Each message is sent only after the reply to the one before arrived: a gateway that
    // buffered either direction would deadlock here.
    let server = GrpcServer::start();
    let gw = Gateway::start(driver, &grpc_toml(server.addr(), "", ""));
    h2client::block_on(LIMIT, async {
        let mut client = EchoClient::connect(gw.addr()).await;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(Msg::text("0")).await.unwrap();
        let mut replies = client
            .chat(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for i in 0..10 {
            let reply = replies.message().await.unwrap().expect("a reply");
            assert_eq!(reply.text, format!("re: {i}"));
            if i < 9 {
                tx.send(Msg::text(&(i + 1).to_string())).await.unwrap();
            }
        }
        drop(tx);
        assert!(replies.message().await.unwrap().is_none(), "the call ends");
    });
});

both_drivers!(grpc_timeout_is_the_calls_deadline, |driver| {
    // This upstream ignores grpc-timeout and answers after 3 s: the gateway's deadline is
    // what ends the call.
    let up = H2Upstream::start(|_| H2Reply {
        status: 200,
        headers: vec![("content-type", "application/grpc".into())],
        trailers: vec![("grpc-status", "0".into())],
        delay: Duration::from_secs(3),
        ..H2Reply::default()
    });
    let gw = Gateway::start(driver, &grpc_toml(up.addr(), "", ""));
    // Sent raw: tonic's client would enforce its own timeout and hide the gateway's.
    let started = Instant::now();
    let answer = raw_call_with(&gw, "/test.Echo/Unary", &[("grpc-timeout", "300m")]);
    let took = started.elapsed();
    assert_eq!(
        answer,
        ("4".into(), true),
        "DEADLINE_EXCEEDED, trailers-only"
    );
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    // The header travels on to the service, which may enforce it too.
    let got = up.received();
    assert!(
        got[0].headers.contains_key("grpc-timeout"),
        "{:?}",
        got[0].headers
    );
});

both_drivers!(a_client_cancel_reaches_the_service, |driver| {
    let server = GrpcServer::start();
    let gw = Gateway::start(driver, &grpc_toml(server.addr(), "", ""));
    h2client::block_on(LIMIT, async {
        let mut client = EchoClient::connect(gw.addr()).await;
        let msg = Msg {
            text: "slow".into(),
            delay_ms: 10_000,
            ..Msg::default()
        };
        let call = client.unary(Request::new(msg));
        // Dropped unanswered: tonic resets the stream (RST_STREAM CANCEL).
        assert!(tokio::time::timeout(Duration::from_millis(300), call)
            .await
            .is_err());
    });
    wait_for("the service to see the call cancelled", LIMIT, || {
        server.cancelled() == 1
    });
    // A streaming call abandoned mid-way ends at the service too.
    h2client::block_on(LIMIT, async {
        let mut client = EchoClient::connect(gw.addr()).await;
        let msg = Msg {
            count: 1000,
            delay_ms: 20,
            ..Msg::default()
        };
        let mut stream = client.count(Request::new(msg)).await.unwrap().into_inner();
        stream.message().await.unwrap().expect("a first message");
    });
    wait_for("the service to see the stream cancelled", LIMIT, || {
        server.cancelled() == 2
    });
});

both_drivers!(an_upstream_reset_reaches_the_client, |driver| {
    let up = H2Upstream::start(|_| H2Reply {
        status: 200,
        headers: vec![("content-type", "application/grpc".into())],
        body: vec![0, 0, 0, 0, 0],
        reset: Some(h2::Reason::CANCEL),
        ..H2Reply::default()
    });
    let gw = Gateway::start(driver, &grpc_toml(up.addr(), "", ""));
    let err = h2client::block_on(LIMIT, async {
        let mut h2 = h2client::connect(gw.addr()).await;
        let req = http::Request::builder()
            .method("POST")
            .uri("http://grpc.test/test.Echo/Unary")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut stream) = h2.send.send_request(req, false).unwrap();
        stream
            .send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
            .unwrap();
        let response = response.await.expect("the head arrives");
        h2client::read_body(response.into_body())
            .await
            .expect_err("the stream is reset")
    });
    assert!(err.is_reset(), "{err:?}");
});

/// Sends one unary call and returns its status code and whether the answer was trailers-only
/// (one HEADERS frame that ends the stream, with grpc-status in it).
fn raw_call(gw: &Gateway, path: &str) -> (String, bool) {
    raw_call_with(gw, path, &[])
}

/// [`raw_call`] with `headers` added to the request.
fn raw_call_with(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> (String, bool) {
    h2client::block_on(LIMIT, async {
        let mut h2 = h2client::connect(gw.addr()).await;
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("http://grpc.test{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(()).unwrap();
        let (response, mut stream) = h2.send.send_request(req, false).unwrap();
        stream
            .send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
            .unwrap();
        let response = response.await.expect("a response");
        assert_eq!(response.status(), 200, "gRPC errors are HTTP 200");
        assert_eq!(response.headers()["content-type"], "application/grpc");
        let trailers_only = response.body().is_end_stream();
        let code = response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (code, trailers_only)
    })
}

both_drivers!(gateway_failures_are_trailers_only_grpc_statuses, |driver| {
    let server = GrpcServer::start();
    let slow = H2Upstream::start(|_| H2Reply {
        delay: Duration::from_secs(5),
        ..H2Reply::ok("")
    });
    let closed: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let toml = listener_toml("")
        + &upstream_toml("grpc", &[(server.addr(), 1)], "protocol = \"h2\"")
        + &upstream_toml("slow", &[(slow.addr(), 1)], "protocol = \"h2\"")
        + &upstream_toml(
            "down",
            &[(closed, 1)],
            "protocol = \"h2\"\ncircuit_breaker = { consecutive_failures = 1, open_for = \"1h\" }",
        )
        + "[[routes]]\nname = \"limited\"\npath_prefix = \"/limited.\"\nupstream = \"grpc\"\n\
           rate_limit = { rate = 1, per = \"1h\" }\n\n"
        + "[[routes]]\nname = \"slow\"\npath_prefix = \"/slow.\"\nupstream = \"slow\"\n\
           timeout = \"300ms\"\n\n"
        + "[[routes]]\nname = \"down\"\npath_prefix = \"/down.\"\nupstream = \"down\"\n\n"
        + "[[routes]]\nname = \"echo\"\npath_prefix = \"/test.Echo/\"\nupstream = \"grpc\"\n\n";
    let gw = Gateway::start(driver, &toml);

    // No route: UNIMPLEMENTED, as a gRPC server answers an unknown method.
    assert_eq!(raw_call(&gw, "/nowhere.Svc/M"), ("12".into(), true));
    // Connection refused: UNAVAILABLE; then the breaker is open: UNAVAILABLE too.
    assert_eq!(raw_call(&gw, "/down.Svc/M"), ("14".into(), true));
    assert_eq!(raw_call(&gw, "/down.Svc/M"), ("14".into(), true));
    // Rate limited: the first call passes (the service does not know the method), the
    // second is RESOURCE_EXHAUSTED.
    assert_eq!(raw_call(&gw, "/limited.Svc/M"), ("12".into(), true));
    assert_eq!(raw_call(&gw, "/limited.Svc/M"), ("8".into(), true));

    // The route's timeout: DEADLINE_EXCEEDED.
    assert_eq!(raw_call(&gw, "/slow.Svc/M"), ("4".into(), true));
    assert_eq!(slow.requests(), 1);
});

both_drivers!(grpc_health_checks_follow_the_serving_status, |driver| {
    let server = GrpcServer::start();
    let check = "health_check = { kind = \"grpc\", interval = \"100ms\", timeout = \"100ms\", \
                 unhealthy_threshold = 1, healthy_threshold = 1 }";
    let gw = Gateway::start(driver, &grpc_toml(server.addr(), check, ""));
    let health = |gw: &Gateway| {
        let stats = gw.ctl(&["stats"]).expect_ok("stats");
        stats["upstreams"]["grpc"]["health"][server.addr().to_string()].clone()
    };
    let wait = |healthy: bool| {
        wait_for(&format!("healthy = {healthy}"), LIMIT, || {
            health(&gw)["healthy"] == serde_json::Value::Bool(healthy)
        });
    };
    wait(true);
    server.set_serving(false);
    wait(false);
    assert!(
        health(&gw).to_string().contains("NOT_SERVING"),
        "{}",
        health(&gw)
    );
    // No healthy endpoint: the call is refused by the gateway as UNAVAILABLE.
    assert_eq!(raw_call(&gw, "/test.Echo/Unary"), ("14".into(), true));
    server.set_serving(true);
    wait(true);
    let reply = h2client::block_on(LIMIT, async {
        let mut client = EchoClient::connect(gw.addr()).await;
        client.unary(Request::new(Msg::text("back"))).await.unwrap()
    });
    assert_eq!(reply.get_ref().text, "echo: back");
});

both_drivers!(early_answers_close_the_stream_cleanly, |driver| {
    // The gateway answers (no route: UNIMPLEMENTED) while the call's body is still open. It
    // reads the rest of the body rather than resetting the stream with NO_ERROR, which some
    // clients take for a failed call.
    let closed: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let toml = listener_toml("")
        + &upstream_toml("grpc", &[(closed, 1)], "protocol = \"h2\"")
        + "[[routes]]\nname = \"other\"\npath_prefix = \"/other/\"\nupstream = \"grpc\"\n";
    let gw = Gateway::start(driver, &toml);
    h2client::block_on(LIMIT, async {
        let mut h2 = h2client::connect(gw.addr()).await;
        let call = || {
            http::Request::builder()
                .method("POST")
                .uri("http://grpc.test/pkg.Svc/Call")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap()
        };
        let (response, mut body) = h2.send.send_request(call(), false).unwrap();
        let response = response.await.expect("a response");
        assert_eq!(response.headers()["grpc-status"], "12");
        assert!(response.body().is_end_stream(), "a trailers-only answer");
        let reset = tokio::time::timeout(
            Duration::from_millis(300),
            std::future::poll_fn(|cx| body.poll_reset(cx)),
        )
        .await;
        assert!(reset.is_err(), "the stream was reset: {reset:?}");
        body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
            .expect("the rest of the body is taken");
        // The connection carries on.
        let mut send = h2.send.clone().ready().await.unwrap();
        let (response, _) = send.send_request(call(), true).unwrap();
        let response = response.await.expect("a second response");
        assert_eq!(response.headers()["grpc-status"], "12");
    });
});
