//! Weighted round robin across an upstream's endpoints, on one shard (exact counts).

use ringway_tests::{
    both_drivers, get, listener_toml, route_toml, upstream_toml, Client, Gateway, Upstream,
};

/// Sends `n` requests on one client connection through a gateway whose upstream has one
/// endpoint per `(upstream, weight)`, and returns how many each upstream got.
fn spread(driver: ringway_tests::Driver, endpoints: &[(&Upstream, u32)], n: usize) -> Vec<usize> {
    let weighted: Vec<_> = endpoints.iter().map(|(up, w)| (up.addr(), *w)).collect();
    let toml =
        listener_toml("") + &upstream_toml("pool", &weighted, "") + &route_toml("all", "pool");
    let gw = Gateway::start(driver, &toml);
    let mut client = Client::connect(gw.addr());
    for i in 0..n {
        assert_eq!(
            client.request(&get("h", &format!("/{i}"))).status,
            200,
            "request {i}"
        );
    }
    endpoints.iter().map(|(up, _)| up.requests()).collect()
}

both_drivers!(weights_three_to_one, |driver| {
    let (a, b) = (Upstream::ok("a"), Upstream::ok("b"));
    assert_eq!(spread(driver, &[(&a, 3), (&b, 1)], 400), vec![300, 100]);
});

both_drivers!(equal_weights_split_evenly, |driver| {
    let ups = [Upstream::ok("a"), Upstream::ok("b"), Upstream::ok("c")];
    let endpoints: Vec<(&Upstream, u32)> = ups.iter().map(|u| (u, 1)).collect();
    assert_eq!(spread(driver, &endpoints, 300), vec![100, 100, 100]);
});
