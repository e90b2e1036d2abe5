use std::time::Duration;

use super::*;
use crate::hub::{HubSettings, LaggingReceivers};

fn setup(timeout_secs: u64) -> (Control, Arc<Hub>) {
    let hub = Hub::new(HubSettings {
        cache_limit: 0,
        receiver_queue_bytes: 1 << 20,
        lagging: LaggingReceivers::Skip,
        ingest_lead_bytes: 0,
        pull: false,
    });
    let settings = ControlSettings {
        url: "ws://127.0.0.1:1/ws/control/wss".into(),
        secret: String::new(),
        external_ip: None,
        external_port: None,
        external_ssl: false,
        publish_auth_timeout: Duration::from_secs(timeout_secs),
        retry_delay: Duration::from_secs(10),
    };
    let control = Control::new(
        settings,
        hub.clone(),
        Arc::default(),
        Duration::from_secs(20),
        Duration::from_secs(60),
    );
    (control, hub)
}

/// Brings the link up; returns what the server sends on it.
fn connected(control: &Control) -> mpsc::Receiver<ControlMessage> {
    let (tx, rx) = mpsc::channel(16);
    control.link_up(tx);
    rx
}

/// Asks to publish on channel `c` in the background.
fn ask(
    control: &Control,
    key: &'static str,
) -> tokio::task::JoinHandle<Result<StreamTicket, Denied>> {
    let control = control.clone();
    tokio::spawn(async move { control.authorize("c", key, ip()).await })
}

async fn next(rx: &mut mpsc::Receiver<ControlMessage>) -> ControlMessage {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a control message in time")
        .expect("link open")
}

fn ip() -> IpAddr {
    "::ffff:10.1.2.3".parse().unwrap()
}

fn reply(method: &str, id: &str, stream: &str) -> ControlMessage {
    ControlMessage::new(method)
        .with_param(param::REQUEST_ID, id)
        .with_param(param::STREAM_CHANNEL, "c")
        .with_param(param::STREAM_ID, stream)
}

#[tokio::test]
async fn denied_at_once_while_down() {
    let (control, _) = setup(20);
    assert_eq!(
        control.authorize("c", "k", ip()).await.err(),
        Some(Denied::NotConnected)
    );
}

#[tokio::test]
async fn accept_gives_a_ticket_whose_drop_sends_publish_end() {
    let (control, _) = setup(20);
    let mut rx = connected(&control);
    let task = ask(&control, "secret-key");
    let request = next(&mut rx).await;
    assert_eq!(request.method(), method::PUBLISH_REQUEST);
    assert_eq!(request.param("request-id"), Some("0"));
    assert_eq!(request.param(param::STREAM_KEY), Some("secret-key"));
    assert_eq!(request.param(param::USER_IP), Some("10.1.2.3"));
    assert!(!redacted(&request).contains("secret-key"));
    control.handle(&reply(method::PUBLISH_ACCEPT, "0", "s-1"));
    let ticket = task.await.unwrap().unwrap();
    assert_eq!(ticket.stream_id, "s-1");
    drop(ticket);
    let end = next(&mut rx).await;
    assert_eq!(end.method(), method::PUBLISH_END);
    assert_eq!(end.param(param::STREAM_CHANNEL), Some("c"));
    assert_eq!(end.param(param::STREAM_ID), Some("s-1"));
}

#[tokio::test]
async fn deny_and_link_drop_deny() {
    let (control, _) = setup(20);
    let mut rx = connected(&control);
    let denied = ask(&control, "k");
    let req = next(&mut rx).await;
    control.handle(&reply(
        method::PUBLISH_DENY,
        req.param(param::REQUEST_ID).unwrap(),
        "",
    ));
    assert_eq!(denied.await.unwrap().err(), Some(Denied::ByCoordinator));
    let dropped = ask(&control, "k");
    let _ = next(&mut rx).await;
    control.link_down();
    assert_eq!(dropped.await.unwrap().err(), Some(Denied::LinkDropped));
    assert!(control.link().pending.is_empty());
}

#[tokio::test(start_paused = true)]
async fn timeout_then_late_accept_is_answered_with_publish_end() {
    let (control, _) = setup(20);
    let mut rx = connected(&control);
    let task = ask(&control, "k");
    let req = next(&mut rx).await;
    let id = req.param(param::REQUEST_ID).unwrap().to_owned();
    tokio::time::advance(Duration::from_secs(21)).await;
    assert_eq!(task.await.unwrap().err(), Some(Denied::Timeout));
    assert!(control.link().pending.is_empty());
    control.handle(&reply(method::PUBLISH_ACCEPT, &id, "late-1"));
    let end = next(&mut rx).await;
    assert_eq!(end.method(), method::PUBLISH_END);
    assert_eq!(end.param(param::STREAM_ID), Some("late-1"));
}

#[tokio::test]
async fn replies_for_unknown_ids_and_garbage_are_ignored() {
    let (control, _) = setup(20);
    let mut rx = connected(&control);
    control.handle(&reply(method::PUBLISH_ACCEPT, "999", "x"));
    control.handle(&reply(method::PUBLISH_ACCEPT, "not a number", "x"));
    control.handle(&codec::parse("WHATEVER\nfoo: bar"));
    control.handle(&codec::parse(""));
    control.handle(&codec::parse("PUBLISH-DENY"));
    assert!(rx.try_recv().is_err());
    let link = control.link();
    assert!(link.pending.is_empty() && link.expired.is_empty());
}

#[tokio::test]
async fn a_cancelled_request_leaves_nothing_pending() {
    let (control, _) = setup(20);
    let mut rx = connected(&control);
    let task = ask(&control, "k");
    let req = next(&mut rx).await;
    task.abort();
    let _ = task.await;
    assert!(control.link().pending.is_empty());
    // Its accept, arriving now, frees the stream on the coordinator.
    control.handle(&reply(
        method::PUBLISH_ACCEPT,
        req.param(param::REQUEST_ID).unwrap(),
        "s-9",
    ));
    assert_eq!(next(&mut rx).await.param(param::STREAM_ID), Some("s-9"));
}

#[tokio::test]
async fn kill_by_id_star_and_empty() {
    let (control, hub) = setup(20);
    let claim = hub.claim("c", "k").unwrap();
    let _s = claim.activate(Some("s-1".into()));
    let kill = |id: &str| {
        ControlMessage::new(method::STREAM_KILL)
            .with_param(param::STREAM_CHANNEL, "c")
            .with_param(param::STREAM_ID, id)
    };
    control.handle(&kill("other"));
    assert!(!claim.kill_token().is_cancelled());
    control.handle(&kill("s-1"));
    assert!(claim.kill_token().is_cancelled());
    for id in ["*", ""] {
        let claim = hub.claim(&format!("d{id}"), "k").unwrap();
        let _s = claim.activate(Some("zzz".into()));
        control.handle(
            &ControlMessage::new(method::STREAM_KILL)
                .with_param(param::STREAM_CHANNEL, format!("d{id}"))
                .with_param(param::STREAM_ID, id),
        );
        assert!(claim.kill_token().is_cancelled(), "id {id:?}");
    }
}

#[tokio::test]
async fn link_up_closes_every_active_publisher() {
    let (control, hub) = setup(20);
    let claim = hub.claim("c", "k").unwrap();
    let _s = claim.activate(None);
    let (tx, _rx) = mpsc::channel(16);
    control.link_up(tx);
    assert!(claim.kill_token().is_cancelled());
}
