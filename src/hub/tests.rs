use std::time::Duration;

use super::*;

fn hub(cache: u64) -> Arc<Hub> {
    Hub::new(HubSettings {
        cache_limit: cache,
        receiver_queue_bytes: 1 << 20,
        lagging: LaggingReceivers::Skip,
        ingest_lead_bytes: 0,
        pull: false,
    })
}

async fn drain(feed: &mut Feed) -> (Vec<u8>, FeedEvent) {
    let mut out = Vec::new();
    loop {
        let mut batch = Vec::new();
        let event = tokio::time::timeout(Duration::from_secs(5), feed.next_batch(&mut batch))
            .await
            .expect("feed stalled");
        out.extend(batch.iter().map(|c| c[0]));
        if event != FeedEvent::Data {
            return (out, event);
        }
    }
}

fn ready(sub: Subscription) -> Result<Feed, InvalidKey> {
    match sub {
        Subscription::Ready(r) => r,
        Subscription::Waiting(_) => panic!("expected a ready subscription"),
    }
}

#[test]
fn one_claim_per_channel_released_on_drop() {
    let hub = hub(0);
    let claim = hub.claim("c", "k").unwrap();
    assert!(hub.claim("c", "k").is_err());
    assert!(hub.claim("other", "k").is_ok());
    drop(claim);
    assert!(hub.claim("c", "k").is_ok());
    assert_eq!(hub.channel_entries(), 0);
}

#[tokio::test]
async fn replay_then_live_then_end() {
    let hub = hub(1 << 20);
    let claim = hub.claim("c", "k").unwrap();
    let broadcast = claim.activate(None);
    broadcast.push(Bytes::from_static(&[1]));
    broadcast.push(Bytes::from_static(&[2]));
    let mut feed = ready(hub.subscribe("c", "k", Kind::Receive)).unwrap();
    broadcast.push(Bytes::from_static(&[3]));
    drop(claim);
    assert_eq!(drain(&mut feed).await, (vec![1, 2, 3], FeedEvent::End));
}

#[tokio::test]
async fn wrong_key_is_refused_now_and_when_waiting() {
    let hub = hub(0);
    let mut waiting = match hub.subscribe("c", "bad", Kind::Receive) {
        Subscription::Waiting(t) => t,
        Subscription::Ready(_) => panic!("nobody publishes yet"),
    };
    let claim = hub.claim("c", "k").unwrap();
    let _session = claim.activate(None);
    assert_eq!(waiting.started().await.err(), Some(InvalidKey));
    assert_eq!(
        ready(hub.subscribe("c", "bad", Kind::Receive)).err(),
        Some(InvalidKey)
    );
}

#[tokio::test]
async fn waiting_probe_gets_the_first_chunk_only() {
    let hub = hub(1 << 20);
    let Subscription::Waiting(mut ticket) = hub.subscribe("c", "k", Kind::Probe) else {
        panic!("should wait");
    };
    let claim = hub.claim("c", "k").unwrap();
    let broadcast = claim.activate(None);
    let mut feed = ticket.started().await.unwrap();
    broadcast.push(Bytes::from_static(&[7]));
    broadcast.push(Bytes::from_static(&[8]));
    assert_eq!(drain(&mut feed).await, (vec![7], FeedEvent::End));
}

#[tokio::test]
async fn probe_gets_first_cached_chunk() {
    let hub = hub(1 << 20);
    let claim = hub.claim("c", "k").unwrap();
    let broadcast = claim.activate(None);
    broadcast.push(Bytes::from_static(&[1]));
    broadcast.push(Bytes::from_static(&[2]));
    let mut feed = ready(hub.subscribe("c", "k", Kind::Probe)).unwrap();
    assert_eq!(drain(&mut feed).await, (vec![1], FeedEvent::End));
}

#[tokio::test]
async fn clear_cache_replays_then_empties_the_cache() {
    let hub = hub(1 << 20);
    let claim = hub.claim("c", "k").unwrap();
    let broadcast = claim.activate(None);
    broadcast.push(Bytes::from_static(&[1]));
    let mut clearing = ready(hub.subscribe("c", "k", Kind::ReceiveClearCache)).unwrap();
    broadcast.push(Bytes::from_static(&[2]));
    let mut late = ready(hub.subscribe("c", "k", Kind::Receive)).unwrap();
    broadcast.push(Bytes::from_static(&[3]));
    assert_eq!(broadcast.cache_bytes(), 0);
    drop(claim);
    assert_eq!(drain(&mut clearing).await.0, [1, 2, 3]);
    assert_eq!(drain(&mut late).await.0, [3]);
}

#[tokio::test]
async fn kill_by_id_or_any() {
    let hub = hub(0);
    let claim = hub.claim("c", "k").unwrap();
    let _s = claim.activate(Some("s1".into()));
    assert!(!hub.kill("c", Some("other")));
    assert!(!claim.kill_token().is_cancelled());
    assert!(hub.kill("c", Some("s1")));
    assert!(claim.kill_token().is_cancelled());
    let claim2 = hub.claim("d", "k").unwrap();
    let _s2 = claim2.activate(None);
    assert!(hub.kill("d", None));
    assert_eq!(hub.kill_all(), 2);
}

#[tokio::test]
async fn dropped_waiters_leave_no_trace() {
    let hub = hub(0);
    for _ in 0..100 {
        drop(hub.subscribe("c", "k", Kind::Receive));
    }
    assert_eq!(hub.channel_entries(), 0);
}

#[tokio::test]
async fn an_accepted_claim_is_killable_before_its_upgrade_completes() {
    let hub = hub(0);
    let pending = hub.claim("c", "k").unwrap();
    let accepted = hub.claim("d", "k").unwrap();
    accepted.set_stream_id("s-9");
    assert!(hub.kill("d", Some("s-9")));
    assert!(accepted.kill_token().is_cancelled());
    // After a reconnect: accepted claims go, claims still waiting for an answer stay.
    assert_eq!(hub.kill_all(), 1);
    assert!(!pending.kill_token().is_cancelled());
}

#[test]
fn several_candidates_wait_at_once_and_the_first_accepted_claims() {
    let hub = hub(0);
    let first = hub.candidate("c").expect("first candidate");
    let second = hub
        .candidate("c")
        .expect("a pending request does not lock the channel");
    let winner = second
        .claim("k2", Who::default())
        .expect("the first accepted request claims");
    assert!(matches!(
        first.claim("k1", Who::default()),
        Err(AlreadyPublishing)
    ));
    // While it publishes, new requests are refused at once.
    assert!(hub.candidate("c").is_err());
    drop(winner);
    let again = hub.candidate("c").expect("free again");
    drop(again);
    assert_eq!(hub.channel_entries(), 0, "nothing left behind");
}

#[test]
fn candidates_per_channel_are_bounded_and_released() {
    let hub = hub(0);
    let held: Vec<Candidate> = (0..MAX_CANDIDATES)
        .map(|_| hub.candidate("c").expect("under the bound"))
        .collect();
    assert!(hub.candidate("c").is_err(), "over the bound");
    assert!(hub.candidate("other").is_ok(), "per channel");
    drop(held);
    assert_eq!(hub.channel_entries(), 0);
    assert!(hub.candidate("c").is_ok());
}

#[test]
fn a_stand_alone_claim_refuses_candidates() {
    let hub = hub(0);
    let claim = hub.claim("c", "k").expect("claim");
    assert!(hub.candidate("c").is_err());
    drop(claim);
    assert!(hub.candidate("c").is_ok());
}

fn edge_hub() -> Arc<Hub> {
    Hub::new(HubSettings {
        cache_limit: 1 << 20,
        receiver_queue_bytes: 1 << 20,
        lagging: LaggingReceivers::Skip,
        ingest_lead_bytes: 0,
        pull: true,
    })
}

fn waiting(sub: Subscription) -> WaitTicket {
    match sub {
        Subscription::Waiting(t) => t,
        Subscription::Ready(_) => panic!("expected a waiting subscription"),
    }
}

#[tokio::test]
async fn an_edge_claims_one_pull_per_channel_and_its_chunks_reach_every_receiver() {
    let hub = edge_hub();
    let (first, pull) = hub.subscribe_or_pull("c", "k", Kind::Receive, Who::default());
    let claim = pull.expect("the first receiver starts the pull");
    let (second, again) = hub.subscribe_or_pull("c", "k", Kind::Receive, Who::default());
    assert!(again.is_none(), "one pull per channel");
    assert!(
        hub.claim("c", "k").is_err(),
        "a pulled channel counts as published"
    );
    assert_eq!(hub.audience("c"), 2);
    let (mut first, mut second) = (waiting(first), waiting(second));
    let broadcast = claim.activate(None);
    broadcast.push(Bytes::from_static(&[1]));
    let mut feeds = [
        first.started().await.unwrap(),
        second.started().await.unwrap(),
    ];
    assert_eq!(hub.audience("c"), 2);
    let (_, none) = hub.subscribe_or_pull("c", "other", Kind::Receive, Who::default());
    assert!(none.is_none());
    broadcast.mark_lost();
    drop(claim);
    for feed in &mut feeds {
        assert_eq!(drain(feed).await, (vec![1], FeedEvent::Lost));
    }
}

#[tokio::test]
async fn a_refused_key_refuses_its_waiters_and_hands_the_channel_to_the_others() {
    let hub = edge_hub();
    let (bad, claim) = hub.subscribe_or_pull("c", "bad", Kind::Receive, Who::default());
    let claim = claim.expect("pull");
    let (good, _) = hub.subscribe_or_pull("c", "good", Kind::Receive, Who::default());
    let (mut bad, mut good) = (waiting(bad), waiting(good));
    claim.refuse_waiters("bad");
    assert_eq!(bad.started().await.err(), Some(InvalidKey));
    drop(claim);
    let (next, key) = hub.pull_for_waiters("c").expect("the other key pulls next");
    assert_eq!(key, "good");
    next.activate(None).push(Bytes::from_static(&[9]));
    let mut feed = good.started().await.unwrap();
    drop(next);
    assert_eq!(drain(&mut feed).await, (vec![9], FeedEvent::End));
    assert!(hub.pull_for_waiters("c").is_none());
}

#[test]
fn a_pull_is_released_only_without_an_audience() {
    let hub = edge_hub();
    let (ticket, claim) = hub.subscribe_or_pull("c", "k", Kind::Receive, Who::default());
    let claim = claim.expect("pull");
    assert!(!claim.release_if_idle(), "a receiver waits");
    drop(ticket);
    assert_eq!(hub.audience("c"), 0);
    assert!(claim.release_if_idle());
    // The channel is free at once: the next receiver starts a new pull.
    let (_, next) = hub.subscribe_or_pull("c", "k", Kind::Receive, Who::default());
    assert!(next.is_some());
    drop(claim);
}

#[test]
fn without_edge_mode_nothing_is_pulled() {
    let hub = hub(0);
    let (_, pull) = hub.subscribe_or_pull("c", "k", Kind::Receive, Who::default());
    assert!(pull.is_none());
}
