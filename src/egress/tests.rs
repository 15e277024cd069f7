use super::*;

#[tokio::test]
async fn the_resolver_drops_what_a_literal_could_not_reach() {
    use reqwest::dns::Resolve;
    let loopback_only = GuardedResolver(Egress { loopback_only: true, allow_link_local: false });
    let name: reqwest::dns::Name = "localhost".parse().unwrap();
    let addrs: Vec<SocketAddr> = loopback_only.resolve(name).await.unwrap().collect();
    assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
}
