//! Worker mode: each queue's requests go to the sink attached for that queue
//! (a threadsafe function into the JavaScript worker thread that serves it).
//!
//! The requests themselves stay in the queue's request ring; what the router
//! decides is who is notified and from which ring position a new worker
//! starts reading. A queue with no sink attached (its worker is starting, or
//! restarting after it died) parks its requests: they are published, nobody
//! is notified, and the next worker starts at the first of them. When a sink
//! is lost, the requests published to it can never be answered by it: the
//! queue thread fails them with EIO (`take_lost`), and the next worker starts
//! after them. Only the queue thread issues and publishes requests, and it
//! publishes under the route's lock, so a worker never reads a request the
//! router has not accounted to it.

use crate::dispatch::{RequestSink, TagTable};
use crate::ring::QueueRing;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A tag whose request has not been delivered to any sink.
const UNDELIVERED: u32 = u32::MAX;

#[derive(Default)]
struct Route {
    sink: Option<Arc<dyn RequestSink>>,
    /// Counts attached sinks; the current one delivers under this epoch.
    epoch: u32,
    /// io ids published while no sink was attached.
    parked: Vec<u32>,
    /// Per tag: the epoch of the sink its current request went to.
    delivered: Vec<u32>,
    /// Epochs whose sink was lost and whose requests are not failed yet.
    lost: Vec<u32>,
    /// The request ring's tail as last published.
    published: u32,
    /// Where the next sink starts reading: after every request of a lost sink.
    resume_at: u32,
}

impl Route {
    fn mark(&mut self, ids: &[u32], epoch: u32) {
        for &id in ids {
            let tag = TagTable::tag_of(id) as usize;
            if self.delivered.len() <= tag {
                self.delivered.resize(tag + 1, UNDELIVERED);
            }
            self.delivered[tag] = epoch;
        }
    }

    /// The sink is gone: what it was given fails with it.
    fn lose_sink(&mut self) {
        self.sink = None;
        self.lost.push(self.epoch);
        self.resume_at = self.published;
    }
}

/// Per-queue routes of one device's requests.
pub struct QueueRouter {
    routes: Box<[Mutex<Route>]>,
    /// Set when some route has lost requests for the queue thread to fail.
    any_lost: Box<[AtomicBool]>,
}

impl QueueRouter {
    pub fn new(nr_queues: usize) -> QueueRouter {
        QueueRouter {
            routes: (0..nr_queues).map(|_| Mutex::new(Route::default())).collect(),
            any_lost: (0..nr_queues).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn route(&self, qid: u16) -> Option<std::sync::MutexGuard<'_, Route>> {
        self.routes.get(qid as usize).map(|r| r.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn flag_lost(&self, qid: u16, route: &Route) {
        if !route.lost.is_empty() {
            self.any_lost[qid as usize].store(true, Ordering::Release);
        }
    }

    /// Attaches `sink` to queue `qid` and notifies it of the requests parked
    /// for it in `ring`, the queue's rings (None before the device has its
    /// queues: then nothing is parked yet). Returns the ring position it
    /// starts reading at; None if the queue has a sink already, or does not
    /// exist.
    pub fn attach(&self, qid: u16, ring: Option<&QueueRing>, sink: Arc<dyn RequestSink>) -> Option<u32> {
        let mut route = self.route(qid)?;
        if route.sink.is_some() {
            return None;
        }
        route.epoch = route.epoch.wrapping_add(1) % UNDELIVERED;
        let (epoch, parked) = (route.epoch, std::mem::take(&mut route.parked));
        route.mark(&parked, epoch);
        route.sink = Some(sink.clone());
        let (start, published) = (route.resume_at, route.published);
        if let Some(ring) = ring {
            // A notification the previous sink never read is void.
            ring.reset_notify();
            if start != published && !sink.publish(qid, ring, &parked, published) {
                route.lose_sink();
            }
        }
        self.flag_lost(qid, &route);
        Some(start)
    }

    /// Detaches queue `qid`'s sink (its worker died or is leaving): later
    /// requests park, and what the sink held is for the queue thread to fail.
    /// Calls `retire` for every tag delivered to that sink (those still held
    /// are the ones it took down with it) before the queue thread can fail
    /// any of them: `retire` runs under the route's lock, which `take_lost`
    /// needs. Returns whether a sink was attached.
    pub fn detach(&self, qid: u16, mut retire: impl FnMut(u16)) -> bool {
        let Some(mut route) = self.route(qid) else { return false };
        if route.sink.is_none() {
            return false;
        }
        let epoch = route.epoch;
        for (tag, _) in route.delivered.iter().enumerate().filter(|(_, e)| **e == epoch) {
            retire(tag as u16);
        }
        route.lose_sink();
        self.flag_lost(qid, &route);
        true
    }

    /// Whether queue `qid` has a sink attached.
    pub fn is_attached(&self, qid: u16) -> bool {
        self.route(qid).is_some_and(|r| r.sink.is_some())
    }

    /// For the queue thread: the tags whose requests went to a sink that is
    /// gone, to fail (each once). Cheap when there are none.
    pub fn take_lost(&self, qid: u16, into: &mut Vec<u16>) {
        let Some(flag) = self.any_lost.get(qid as usize) else { return };
        if !flag.swap(false, Ordering::AcqRel) {
            return;
        }
        let Some(mut route) = self.route(qid) else { return };
        let lost = std::mem::take(&mut route.lost);
        for (tag, epoch) in route.delivered.iter_mut().enumerate() {
            if *epoch != UNDELIVERED && lost.contains(epoch) {
                into.push(tag as u16);
                *epoch = UNDELIVERED;
            }
        }
    }
}

impl RequestSink for QueueRouter {
    fn publish(&self, qid: u16, ring: &QueueRing, ids: &[u32], tail: u32) -> bool {
        let Some(mut route) = self.route(qid) else { return false };
        route.published = tail;
        match route.sink.clone() {
            None => {
                route.mark(ids, UNDELIVERED);
                route.parked.extend_from_slice(ids);
                ring.publish_requests(tail);
            }
            Some(sink) => {
                let epoch = route.epoch;
                route.mark(ids, epoch);
                if !sink.publish(qid, ring, ids, tail) {
                    route.lose_sink();
                }
            }
        }
        self.flag_lost(qid, &route);
        true
    }

    fn take_lost(&self, qid: u16, into: &mut Vec<u16>) {
        QueueRouter::take_lost(self, qid, into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the io ids it is given; refuses once `closed`.
    #[derive(Default)]
    struct Recorder {
        got: Mutex<Vec<u32>>,
        closed: AtomicBool,
    }

    impl RequestSink for Recorder {
        fn publish(&self, _qid: u16, ring: &QueueRing, ids: &[u32], tail: u32) -> bool {
            ring.publish_requests(tail);
            if self.closed.load(Ordering::Relaxed) {
                return false;
            }
            self.got.lock().unwrap().extend_from_slice(ids);
            true
        }
    }

    fn ids(tags: &[u32]) -> Vec<u32> {
        tags.iter().map(|&t| t | 1 << 16).collect()
    }

    fn lost(router: &QueueRouter, qid: u16) -> Vec<u16> {
        let mut out = Vec::new();
        router.take_lost(qid, &mut out);
        out.sort();
        out
    }

    #[test]
    fn parked_requests_go_to_the_next_sink() {
        let (router, ring) = (QueueRouter::new(1), QueueRing::new(8).unwrap());
        assert!(router.publish(0, &ring, &ids(&[1, 2]), 2));
        assert_eq!(ring.request_tail(), 2, "parked requests are published");
        let a = Arc::new(Recorder::default());
        assert_eq!(router.attach(0, Some(&ring), a.clone()), Some(0), "the first sink reads from the start");
        assert_eq!(router.attach(0, Some(&ring), a.clone()), None, "one sink per queue");
        assert!(router.publish(0, &ring, &ids(&[3]), 3));
        assert_eq!(*a.got.lock().unwrap(), ids(&[1, 2, 3]));
        assert!(lost(&router, 0).is_empty());
    }

    #[test]
    fn what_a_lost_sink_held_is_failed_and_the_next_starts_after_it() {
        let (router, ring) = (QueueRouter::new(1), QueueRing::new(8).unwrap());
        router.attach(0, Some(&ring), Arc::new(Recorder::default()));
        router.publish(0, &ring, &ids(&[1, 2]), 2);
        let mut retired = Vec::new();
        assert!(router.detach(0, |tag| retired.push(tag)));
        assert_eq!(retired, vec![1, 2]);
        assert!(!router.detach(0, |_| panic!("nothing attached any more")));
        router.publish(0, &ring, &ids(&[5]), 3); // parked: the dead worker never saw it
        assert_eq!(lost(&router, 0), vec![1, 2]);
        assert!(lost(&router, 0).is_empty(), "each lost tag once");
        let b = Arc::new(Recorder::default());
        assert_eq!(router.attach(0, Some(&ring), b.clone()), Some(2), "the next sink skips what the lost one had");
        assert_eq!(*b.got.lock().unwrap(), ids(&[5]));
        assert!(lost(&router, 0).is_empty());
    }

    #[test]
    fn a_sink_that_refuses_loses_what_it_was_given() {
        let (router, ring) = (QueueRouter::new(2), QueueRing::new(8).unwrap());
        let a = Arc::new(Recorder::default());
        router.attach(1, Some(&ring), a.clone());
        a.closed.store(true, Ordering::Relaxed);
        assert!(router.publish(1, &ring, &ids(&[7]), 1));
        assert!(!router.is_attached(1));
        assert_eq!(lost(&router, 1), vec![7]);
        assert!(!router.publish(2, &ring, &ids(&[0]), 1), "no such queue");
    }
}
