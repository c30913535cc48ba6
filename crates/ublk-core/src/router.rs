//! Worker mode: each queue's batches go to the sink attached for that queue
//! (a threadsafe function into the JavaScript worker thread that serves it).
//!
//! A queue with no sink attached (its worker is starting, or restarting after
//! it died) parks its batches until one is. When a sink is lost, the requests
//! delivered to it can never be answered by it: the queue thread fails them
//! with EIO (`take_lost`). Only the queue thread issues and delivers requests,
//! so when it takes the lost ones there is no batch half-way between the two,
//! and parked batches (never seen by the dead worker) are kept for the next.

use crate::dispatch::{wire, RequestSink, TagTable};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A tag whose request has not been delivered to any sink.
const UNDELIVERED: u32 = u32::MAX;

#[derive(Default)]
struct Route {
    sink: Option<Arc<dyn RequestSink>>,
    /// Counts attached sinks; the current one delivers under this epoch.
    epoch: u32,
    parked: Vec<Vec<u32>>,
    /// Per tag: the epoch of the sink its current request went to.
    delivered: Vec<u32>,
    /// Epochs whose sink was lost and whose requests are not failed yet.
    lost: Vec<u32>,
}

impl Route {
    fn mark(&mut self, batch: &[u32], epoch: u32) {
        for request in batch.chunks_exact(wire::REQUEST_WORDS) {
            let tag = TagTable::tag_of(request[wire::REQUEST_IO_ID]) as usize;
            if self.delivered.len() <= tag {
                self.delivered.resize(tag + 1, UNDELIVERED);
            }
            self.delivered[tag] = epoch;
        }
    }

    /// Hands `batch` to the sink, or records it as lost with the sink.
    fn deliver(&mut self, qid: u16, batch: Vec<u32>) {
        let Some(sink) = self.sink.clone() else {
            self.mark(&batch, UNDELIVERED);
            self.parked.push(batch);
            return;
        };
        self.mark(&batch, self.epoch);
        if !sink.deliver(qid, batch) {
            // The worker is going away: what it was given fails with it.
            self.sink = None;
            self.lost.push(self.epoch);
        }
    }
}

/// Per-queue routes of one device's batches.
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

    /// Attaches `sink` to queue `qid` and delivers the batches parked for it.
    /// False if the queue has a sink already, or does not exist.
    pub fn attach(&self, qid: u16, sink: Arc<dyn RequestSink>) -> bool {
        let Some(mut route) = self.route(qid) else { return false };
        if route.sink.is_some() {
            return false;
        }
        route.epoch = route.epoch.wrapping_add(1) % UNDELIVERED;
        route.sink = Some(sink);
        for batch in std::mem::take(&mut route.parked) {
            route.deliver(qid, batch);
        }
        if !route.lost.is_empty() {
            self.any_lost[qid as usize].store(true, Ordering::Release);
        }
        true
    }

    /// Detaches queue `qid`'s sink (its worker died or is leaving): later
    /// batches park, and what the sink held is for the queue thread to fail.
    /// Calls `retire` for every tag delivered to that sink (those still held
    /// are the ones it took down with it) before the queue thread can fail
    /// any of them: `retire` runs under the route's lock, which `take_lost`
    /// needs. Returns whether a sink was attached.
    pub fn detach(&self, qid: u16, mut retire: impl FnMut(u16)) -> bool {
        let Some(mut route) = self.route(qid) else { return false };
        if route.sink.take().is_none() {
            return false;
        }
        let epoch = route.epoch;
        for (tag, _) in route.delivered.iter().enumerate().filter(|(_, e)| **e == epoch) {
            retire(tag as u16);
        }
        route.lost.push(epoch);
        self.any_lost[qid as usize].store(true, Ordering::Release);
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
    fn deliver(&self, qid: u16, batch: Vec<u32>) -> bool {
        match self.route(qid) {
            Some(mut route) => {
                route.deliver(qid, batch);
                if !route.lost.is_empty() {
                    self.any_lost[qid as usize].store(true, Ordering::Release);
                }
                true
            }
            None => false,
        }
    }

    fn take_lost(&self, qid: u16, into: &mut Vec<u16>) {
        QueueRouter::take_lost(self, qid, into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it is given; refuses once `open` is false.
    #[derive(Default)]
    struct Recorder {
        got: Mutex<Vec<u32>>,
        closed: AtomicBool,
    }

    impl RequestSink for Recorder {
        fn deliver(&self, _qid: u16, batch: Vec<u32>) -> bool {
            if self.closed.load(Ordering::Relaxed) {
                return false;
            }
            self.got.lock().unwrap().extend(batch.chunks_exact(wire::REQUEST_WORDS).map(|r| r[0]));
            true
        }
    }

    fn batch(tags: &[u32]) -> Vec<u32> {
        tags.iter().flat_map(|&t| [t | 1 << 16, 0, 0, 0, 8]).collect()
    }

    fn lost(router: &QueueRouter) -> Vec<u16> {
        let mut out = Vec::new();
        router.take_lost(0, &mut out);
        out.sort();
        out
    }

    #[test]
    fn parked_batches_go_to_the_next_sink() {
        let router = QueueRouter::new(1);
        assert!(router.deliver(0, batch(&[1, 2])));
        let a = Arc::new(Recorder::default());
        assert!(router.attach(0, a.clone()));
        assert!(!router.attach(0, a.clone()), "one sink per queue");
        assert!(router.deliver(0, batch(&[3])));
        assert_eq!(*a.got.lock().unwrap(), vec![1 | 1 << 16, 2 | 1 << 16, 3 | 1 << 16]);
        assert!(lost(&router).is_empty());
    }

    #[test]
    fn what_a_lost_sink_held_is_failed_and_parked_requests_are_kept() {
        let router = QueueRouter::new(1);
        let a = Arc::new(Recorder::default());
        router.attach(0, a);
        router.deliver(0, batch(&[1, 2]));
        let mut retired = Vec::new();
        assert!(router.detach(0, |tag| retired.push(tag)));
        assert_eq!(retired, vec![1, 2]);
        assert!(!router.detach(0, |_| panic!("nothing attached any more")));
        router.deliver(0, batch(&[5])); // parked: the dead worker never saw it
        assert_eq!(lost(&router), vec![1, 2]);
        assert!(lost(&router).is_empty(), "each lost tag once");
        let b = Arc::new(Recorder::default());
        router.attach(0, b.clone());
        assert_eq!(*b.got.lock().unwrap(), vec![5 | 1 << 16]);
        assert!(lost(&router).is_empty());
    }

    #[test]
    fn a_sink_that_refuses_loses_what_it_was_given() {
        let router = QueueRouter::new(2);
        let a = Arc::new(Recorder::default());
        router.attach(1, a.clone());
        a.closed.store(true, Ordering::Relaxed);
        assert!(router.deliver(1, batch(&[7])));
        assert!(!router.is_attached(1));
        let mut out = Vec::new();
        router.take_lost(1, &mut out);
        assert_eq!(out, vec![7]);
        assert!(!router.deliver(2, batch(&[0])), "no such queue");
    }
}
