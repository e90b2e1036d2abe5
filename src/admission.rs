//! Admission of streaming requests (docs/PROTOCOL.md §2.2): the checks in
//! their order, the channel claim and the coordinator's verdict for
//! publishers, the whitelist for receivers, then the upgrade and the session
//! task.

mod play;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;

use crate::access::IpSlot;
use crate::control::{Control, StreamTicket};
use crate::front_door::{self, Refusal};
use crate::http::Answer;
use crate::hub::{Candidate, Kind, PublisherClaim, Stopper, Who};
use crate::metrics::{OutcomeLabel, ReasonLabel};
use crate::session::{self, Close, Limits, SessionInfo, Tag};
use crate::state::Shared;
use crate::webhook::{self, EndReason, Event};

type UpgradeFut = fastwebsockets::upgrade::UpgradeFut;

/// A streaming request that passed the checks every kind shares.
pub(crate) struct Admitted<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) info: SessionInfo,
    pub(crate) key: &'a str,
    pub(crate) slot: IpSlot,
}

/// Answers `/{channel}/{key}/{kind}`: a refusal, `101` with the session spawned,
/// or for `play` the stream's `200`.
pub(crate) async fn admit(
    req: &mut Request<Incoming>,
    ip: IpAddr,
    shared: &Arc<Shared>,
    channel: &str,
    key: &str,
    kind: &str,
) -> Answer {
    let tag = Tag {
        id: shared.next_session_id(),
        ip,
    };
    let admitted = match common_checks(shared, tag, channel, key, kind) {
        Ok(admitted) => admitted,
        Err(refusal) => return refused(shared, tag, refusal),
    };
    let result = match admitted.info.kind {
        Kind::Publish => publish(req, admitted).await,
        Kind::Play => play::play(req, admitted).await,
        Kind::Receive | Kind::ReceiveClearCache | Kind::Probe => receive(req, admitted).await,
    };
    result.unwrap_or_else(|refusal| refused(shared, tag, refusal))
}

/// The per-IP limit, then channel, key and kind, in the original's order.
fn common_checks<'a>(
    shared: &'a Arc<Shared>,
    tag: Tag,
    channel: &str,
    key: &'a str,
    kind: &str,
) -> Result<Admitted<'a>, Refusal> {
    let slot = shared
        .limiter
        .acquire(tag.ip)
        .ok_or(Refusal::TooManyRequests)?;
    let kind = front_door::validate(channel, key, kind, shared.config.id_max_length)?;
    tracing::info!(target: "request", channel, kind = kind.as_str(), "{tag} request");
    let info = SessionInfo {
        tag,
        channel: channel.to_owned(),
        kind,
        metrics: shared.metrics.clone(),
    };
    Ok(Admitted {
        shared,
        info,
        key,
        slot,
    })
}

fn refused(shared: &Shared, tag: Tag, refusal: Refusal) -> Answer {
    let reason = refusal.label();
    shared
        .metrics
        .refused
        .get_or_create(&ReasonLabel { reason })
        .inc();
    tracing::info!(target: "request", status = refusal.status().as_u16(), "{tag} refused: {refusal}");
    refusal.response()
}

async fn publish(req: &mut Request<Incoming>, a: Admitted<'_>) -> Result<Answer, Refusal> {
    let Admitted {
        shared,
        info,
        key,
        slot,
    } = a;
    let (claim, ticket) = match &shared.control {
        None => {
            let claim = shared
                .hub
                .claim_as(&info.channel, key, who(&info))
                .map_err(|_| Refusal::AlreadyPublishing)?;
            front_door::check_upgrade(req.method(), req.version(), req.headers())?;
            callback(shared, &info, key).await?;
            (claim, None)
        }
        Some(control) => {
            let candidate = shared
                .hub
                .candidate(&info.channel)
                .map_err(|_| Refusal::AlreadyPublishing)?;
            front_door::check_upgrade(req.method(), req.version(), req.headers())?;
            callback(shared, &info, key).await?;
            let (claim, ticket) = authorized(control, candidate, &info, key, shared).await?;
            (claim, Some(ticket))
        }
    };
    let (response, upgrade) = upgrade(req)?;
    let stream_id = ticket.as_ref().map(|t| t.stream_id.clone());
    if let Some(id) = &stream_id {
        claim.set_stream_id(id);
    }
    let (channel, tag) = (info.channel.as_str(), info.tag);
    tracing::info!(target: "request", channel, stream_id = stream_id.as_deref().unwrap_or(""), "{tag} publish accepted");
    let limits = limits(shared, Kind::Publish);
    let upgrade_timeout = shared.config.upgrade_timeout;
    let drain = shared.drain.signal.clone();
    let webhook = shared.webhook.clone();
    shared.drain.spawn(async move {
        let _slot = slot;
        if let Some(io) = finish_upgrade(upgrade, upgrade_timeout, &info).await {
            let stats = claim.stats();
            let ended = info.clone();
            if let Some(webhook) = &webhook {
                webhook.emit(Event::PublishStart {
                    time: webhook::now(),
                    channel: info.channel.clone(),
                    id: info.tag.id,
                    ip: webhook::ip(info.tag.ip),
                });
            }
            let close = session::run_publisher(io, info, claim, stream_id, limits, drain).await;
            if let Some(webhook) = &webhook {
                webhook.emit(Event::PublishEnd {
                    time: webhook::now(),
                    channel: ended.channel,
                    id: ended.tag.id,
                    ip: webhook::ip(ended.tag.ip),
                    duration_seconds: stats.duration().as_secs_f64(),
                    chunks: stats.chunks(),
                    bytes: stats.bytes(),
                    reason: end_reason(close, stats.stopper()),
                });
            }
        }
        // The claim is gone (receivers closed, channel freed); PUBLISH-END goes last.
        drop(ticket);
    });
    Ok(response)
}

/// Asks the coordinator, then claims the channel if this request is the first
/// one accepted. A request that loses the race is answered `Already publishing.`
/// and its stream ended at the coordinator (the ticket's PUBLISH-END).
async fn authorized(
    control: &Control,
    candidate: Candidate,
    info: &SessionInfo,
    key: &str,
    shared: &Shared,
) -> Result<(PublisherClaim, StreamTicket), Refusal> {
    let (channel, tag) = (info.channel.as_str(), info.tag);
    tracing::info!(target: "request", channel, "{tag} publish request sent to the coordinator");
    let answer = control.authorize(channel, key, tag.ip).await;
    let outcome = |outcome| {
        let counter = shared
            .metrics
            .publish_requests
            .get_or_create(&OutcomeLabel { outcome });
        counter.inc();
    };
    let ticket = answer.map_err(|denied| {
        outcome(denied.label());
        tracing::info!(target: "request", channel, reason = %denied, "{tag} publish denied");
        Refusal::PublishDenied
    })?;
    match candidate.claim(key, who(info)) {
        Ok(claim) => {
            outcome("accepted");
            Ok((claim, ticket))
        }
        Err(_) => {
            outcome("lost_race");
            tracing::info!(target: "request", channel, "{tag} publish accepted, but another accepted request claimed the channel first");
            Err(Refusal::AlreadyPublishing)
        }
    }
}

/// The authorisation callback, for the kinds it is asked about: the last check
/// before the upgrade (and before the coordinator). Fails closed.
pub(crate) async fn callback(
    shared: &Shared,
    info: &SessionInfo,
    key: &str,
) -> Result<(), Refusal> {
    let Some(auth) = shared.auth.as_ref().filter(|a| a.applies(info.kind)) else {
        return Ok(());
    };
    let (channel, kind, tag) = (info.channel.as_str(), info.kind.as_str(), info.tag);
    auth.check(info.kind, channel, key, tag)
        .await
        .map_err(|denied| {
            tracing::info!(target: "request", channel, kind, reason = %denied, "{tag} denied by the authorisation callback");
            Refusal::PublishDenied
        })
}

async fn receive(req: &mut Request<Incoming>, a: Admitted<'_>) -> Result<Answer, Refusal> {
    let Admitted {
        shared,
        info,
        key,
        slot,
    } = a;
    if !shared.config.play_whitelist.contains(info.tag.ip) {
        return Err(Refusal::NotWhitelisted);
    }
    front_door::check_upgrade(req.method(), req.version(), req.headers())?;
    callback(shared, &info, key).await?;
    let (response, upgrade) = upgrade(req)?;
    let hub = shared.hub.clone();
    let edge = shared.edge.clone();
    let key = key.to_owned();
    let limits = limits(shared, info.kind);
    let upgrade_timeout = shared.config.upgrade_timeout;
    let drain = shared.drain.signal.clone();
    shared.drain.spawn(async move {
        let _slot = slot;
        if let Some(io) = finish_upgrade(upgrade, upgrade_timeout, &info).await {
            let (subscription, pull) =
                hub.subscribe_or_pull(&info.channel, &key, info.kind, who(&info));
            if let (Some(claim), Some(edge)) = (pull, &edge) {
                edge.start(claim, info.channel.clone(), key);
            }
            session::run_receiver(io, info, subscription, limits, drain).await;
        }
    });
    Ok(response)
}

/// Why a publisher ended, for its `publish_end` event.
fn end_reason(close: Close, stopper: Option<Stopper>) -> EndReason {
    match stopper {
        Some(Stopper::Operator) => EndReason::Killed,
        Some(Stopper::Coordinator) => EndReason::Coordinator,
        None if close == Close::SHUTDOWN => EndReason::Shutdown,
        None if close == Close::CLIENT_CLOSED => EndReason::ClientClosed,
        None => EndReason::Error,
    }
}

fn who(info: &SessionInfo) -> Who {
    Who {
        id: info.tag.id,
        ip: info.tag.ip,
    }
}

fn limits(shared: &Shared, kind: Kind) -> Limits {
    let config = &shared.config;
    Limits {
        heartbeat: config.heartbeat,
        idle_timeout: config.idle_timeout,
        max_message_bytes: if kind == Kind::Publish {
            config.max_message_bytes
        } else {
            config.max_client_message_bytes
        },
    }
}

fn upgrade(req: &mut Request<Incoming>) -> Result<(Answer, UpgradeFut), Refusal> {
    let (response, fut) = fastwebsockets::upgrade::upgrade(req).map_err(|_| Refusal::BadRequest)?;
    Ok((response.map(|_| crate::http::Body::default()), fut))
}

async fn finish_upgrade(
    fut: UpgradeFut,
    limit: Duration,
    info: &SessionInfo,
) -> Option<hyper::upgrade::Upgraded> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(ws)) => Some(ws.into_inner().into_inner()),
        Ok(Err(e)) => {
            tracing::info!(target: "request", error = %e, "{} upgrade failed", info.tag);
            None
        }
        Err(_) => {
            tracing::info!(target: "request", "{} upgrade timed out", info.tag);
            None
        }
    }
}
