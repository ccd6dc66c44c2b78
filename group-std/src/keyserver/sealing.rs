//! Parallel sealing of key bundles (issue 14): a rekey of a large group sends one bundle per
//! member, and each bundle's public-key work (an ephemeral P-256 key, ECDH with the member's
//! key, the sealing of the key material and the server's ECDSA signature) is independent of
//! the others. [`poll_batch`] polls up to a batch of messages from the key server in order
//! (every state change, counter and ephemeral key drawn on the calling thread, exactly as
//! [`KeyServer::poll_transmit`] would), then seals the bundles of that batch on scoped worker
//! threads and returns the messages in the order they were polled. What is persisted, and in
//! which order, is what the one-at-a-time path persists; the bytes are the same too (the
//! signatures are deterministic and the ephemeral keys come from the same RNG draws).

use std::num::NonZeroUsize;

use group_core::keydist::{
    BundleJob, Error, KeyServer, MAX_MESSAGE_LEN, Outgoing, ServerCredentials, ServerStore,
    ServerTables, Transmit,
};
use group_core::time::Instant;
use rand_core::CryptoRng;

/// How [`poll_batch`] seals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealingConfig {
    /// Threads sealing bundles, the calling one included (1: everything on the caller).
    pub workers: usize,
    /// Fewer bundles than this in a batch are sealed on the calling thread (spawning threads
    /// costs more than it saves for a handful of bundles).
    pub min_parallel: usize,
    /// Most messages polled per batch: bounds the memory held and the delay before the first
    /// message of a large rekey leaves.
    pub batch: usize,
}

impl SealingConfig {
    /// As many workers as the machine has CPUs, parallel from 4 bundles, 64 messages a batch.
    pub fn from_machine() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            min_parallel: 4,
            batch: 64,
        }
    }

    /// Everything on the calling thread (the one-at-a-time path, in batches).
    pub fn serial() -> Self {
        Self {
            workers: 1,
            min_parallel: usize::MAX,
            batch: 64,
        }
    }
}

/// One message ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// Recipient, length and kind, as [`KeyServer::poll_transmit`] reports them.
    pub transmit: Transmit,
    /// The message (`transmit.len` bytes).
    pub bytes: Vec<u8>,
}

/// A batch of messages, in the order they were polled.
#[derive(Debug, Default)]
pub struct Batch {
    /// Each message, or why its sealing failed (nothing else depends on it: its
    /// retransmission is scheduled, as after a lost datagram).
    pub messages: Vec<Result<Outbound, Error>>,
    /// Polling stopped on this error (a store failure): the messages before it stand.
    pub stopped: Option<Error>,
}

enum Slot {
    Done(Result<Outbound, Error>),
    Job(Box<BundleJob>),
}

/// Polls up to `cfg.batch` messages from `server` and seals its bundles, on up to
/// `cfg.workers` threads when there are at least `cfg.min_parallel` of them. An empty
/// [`Batch::messages`] with no error: nothing is due.
pub fn poll_batch<St, const G: usize, T, const B: usize, R>(
    server: &mut KeyServer<St, G, T, B>,
    now: Instant,
    rng: &mut R,
    cfg: &SealingConfig,
) -> Batch
where
    St: ServerStore,
    T: ServerTables,
    R: CryptoRng + ?Sized,
{
    let mut slots = Vec::new();
    let mut stopped = None;
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    while slots.len() < cfg.batch.max(1) {
        match server.poll_outgoing(now, rng, &mut buf) {
            Ok(None) => break,
            Ok(Some(Outgoing::Ready(t))) => {
                let bytes = buf.get(..t.len).unwrap_or(&[]).to_vec();
                slots.push(Slot::Done(Ok(Outbound { transmit: t, bytes })));
            }
            Ok(Some(Outgoing::Bundle(job))) => slots.push(Slot::Job(Box::new(job))),
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
    }
    let jobs = slots.iter().filter(|s| matches!(s, Slot::Job(_))).count();
    let workers = cfg.workers.clamp(1, jobs.max(1));
    let creds = server.credentials();
    let messages = if workers < 2 || jobs < cfg.min_parallel {
        slots
            .into_iter()
            .map(|s| match s {
                Slot::Done(r) => r,
                Slot::Job(job) => seal(*job, creds),
            })
            .collect()
    } else {
        seal_parallel(slots, creds, workers)
    };
    Batch { messages, stopped }
}

/// Seals one bundle into a buffer of its own.
fn seal(job: BundleJob, creds: &ServerCredentials) -> Result<Outbound, Error> {
    let mut bytes = vec![0u8; MAX_MESSAGE_LEN];
    let transmit = job.seal(creds, &mut bytes)?;
    bytes.truncate(transmit.len);
    Ok(Outbound { transmit, bytes })
}

/// Seals the jobs among `slots` on `workers` threads (the caller's one of them), each taking
/// a contiguous share; the results keep the slots' order.
fn seal_parallel(
    slots: Vec<Slot>,
    creds: &ServerCredentials,
    workers: usize,
) -> Vec<Result<Outbound, Error>> {
    let share = slots.len().div_ceil(workers).max(1);
    let mut chunks: Vec<Vec<Slot>> = Vec::with_capacity(workers);
    let mut rest = slots.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(share).collect());
    }
    let run = |chunk: Vec<Slot>| -> Vec<Result<Outbound, Error>> {
        chunk
            .into_iter()
            .map(|s| match s {
                Slot::Done(r) => r,
                Slot::Job(job) => seal(*job, creds),
            })
            .collect()
    };
    let mut first = chunks.drain(..1.min(chunks.len())).next();
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || run(chunk)))
            .collect();
        let mut out = first.take().map(run).unwrap_or_default();
        for h in handles {
            // A worker panics only if sealing does, which it does not (typed errors); should
            // it, the panic is resumed here rather than a message silently lost.
            match h.join() {
                Ok(part) => out.extend(part),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}
