//! quinn endpoint and transport configuration (RFC 9000) for both sides of the HTTP/3 wire.
//!
//! Defaults and why:
//! - `max_concurrent_bidi_streams` 1024: quinn's 100 throttles 256-way concurrent benchmarks and
//!   the ≥ 1000 in-flight streams the transport must carry (each gRPC call is one bidi stream).
//! - stream window 2 MiB / connection window 16 MiB (quinn: 1.25 MB / unlimited-ish): the same as the
//!   HTTP/2 wire, so the two are compared on equal flow-control footing.
//! - Cubic congestion control (quinn's default); BBR is selectable and holds up far better under
//!   random loss (≥ 1 %), where Cubic keeps halving its window.
//! - idle timeout 30 s; keep-alive off unless configured (as for HTTP/2).
//! - Loopback connections use the loopback route's MTU (~64 KiB, read from the kernel) without a
//!   search (`loopback_mtu`; servers search, up to 16 KiB), and endpoints announce
//!   quinn's largest `max_udp_payload_size` so peers may: bulk data on loopback moves in
//!   datagrams of 16–64 KiB, as TCP's segments do there.
//! - `mtu_upper_bound` 1452 (quinn's) for every other path: a larger bound helps jumbo-frame
//!   paths but costs every new connection a longer MTU search (session-4 notes below).
//! - UDP socket buffers of 1 MiB (Linux defaults to 208 KiB): with a few MiB in flight the
//!   default receive buffer overflowed and the kernel dropped datagrams (`RcvbufErrors` in
//!   /proc/net/snmp), which QUIC took for congestion — 64 KiB unary calls at c=32 ran at a
//!   quarter of HTTP/2's rate, server streams at ~0.6× of what they reach now. Bigger is not
//!   better: a 4 MiB buffer queues small calls behind bulk data (bufferbloat in the socket) —
//!   in `zone-bench --soak --soak-secs 20 --wire h3` (unary mixed with bulk streams on one
//!   connection) unary p99 was 30–33 ms with 4 MiB against 21–23 ms with 1 MiB (208 KiB: 13–17
//!   ms, but stream-64k fell from ~5 to 3.2 Gbit/s), at the same rates and bulk throughput. The
//!   kernel caps the request at `net.core.rmem_max`/`wmem_max`.
//!
//! ## Where HTTP/3 time goes (profiled 2026-11-24, `perf record --call-graph dwarf` on
//! `zone-bench --quick --scenario stream-64k`, loopback, 2 cores)
//!
//! - Bulk transfer (64 KiB messages): H3 reaches ~0.56× HTTP/2's Gbit/s at ~1.7× the CPU per GiB.
//!   Of the samples, ~13 % are `memmove` and ~15 % AES-GCM, nearly all inside quinn's connection
//!   driver (packet assembly in `poll_transmit`/`write_stream_frames`, decode in `handle_decode`,
//!   `recvmmsg`). QUIC encrypts and frames every ~1.4 KB datagram in user space, where HTTP/2 over
//!   TCP hands the kernel 16 KiB TLS records and 64 KiB segments; this crate's own code
//!   (`serve_request`, the body adapters) is under 2 %. GSO/GRO are on.
//! - 64 KiB unary at c=32 ran at 0.25× HTTP/2 until the UDP buffers were raised (kernel drops seen
//!   as `RcvbufErrors`); now ~0.45–0.5×, the same per-packet costs bounding it.
//! - Small unary calls: ours ran at ~0.67× tonic-h3's rate at c=32 although both sit on h3 and
//!   quinn. Ruled out by experiment: the per-request JoinSet, the STOP_SENDING watch, the UDP
//!   buffer size. Part of it was the empty-DATA filter queueing every chunk: clean chunks now pass
//!   whole (0.73–0.79×). Session 2 (`zone-bench --wire h3` vs `--wire tonic-h3`, `perf record
//!   -F 4999`, samples per 1000 calls): ours 607, tonic-h3 498; the excess is spread thin — libc
//!   `memmove` 33 vs 23, malloc/free, `quinn_proto` 57 vs 43, `http` header parsing, our own
//!   code 23 vs 15 for h3-quinn + h3-util + axum-h3. The one big item was future size: a call's
//!   future was 35 KiB (the ~10 KiB connect future and the 0-RTT/retry paths inlined, and one
//!   async block over all wires), memcpy'd as it was boxed; now ~4 KiB (connect, 0-RTT and the
//!   GOAWAY retry are boxed slow paths; `client::channel` tests bound it). Packets per call are
//!   not the problem: quinn's `ConnectionStats` show ~1.0 datagram per call from the client and
//!   ~0.7 from the server. CPU µs per call at c=32: h2 ~50, ours ~85–90, tonic-h3 ~65.
//! - Session 3 (2026-12-04): DATA payloads now reach quinn as their own `Bytes`
//!   (`backend::send_payload`, quinn's `write_chunks`) instead of being copied by `poll_write`.
//!   The copy was small: `memmove` stayed at ~11 % of the samples either way (`perf record -F
//!   999` on `zone-bench --scenario stream-64k --wire h3`); nearly all of it is quinn's packet
//!   assembly and receive path. Throughput did not move beyond run-to-run spread, which is large
//!   on this path (2.2–3.8 Gbit/s for the same build, `--reps 5 --duration 3`). A lead for that
//!   spread: `Udp: RcvbufErrors` in /proc/net/snmp rises by 50–160 per 9 s of stream-64k with
//!   the 1 MiB buffers — the receiving runtime falls behind, the kernel drops datagrams, and the
//!   congestion controller takes each drop for congestion (on loopback, Cubic's time-based
//!   regrowth is slow next to the µs RTT). TCP never loses there: its window follows the socket
//!   buffer. Flow-control windows (2 MiB stream / 16 MiB connection) far exceed what the socket
//!   buffer holds, so they do not prevent it. Tried the same day (env-overridden defaults in a
//!   scratch build, `zone-bench --scenario stream-64k --wire h3 --reps 3 --duration 3`, two
//!   rounds, drops = RcvbufErrors delta): 1 MiB buffers 1.78 / 3.31 Gbit/s (260 / 22 drops);
//!   4 MiB 2.99 / 3.52 (0 / 0); 1 MiB connection + 512 KiB stream window 2.83 / 2.59 (0 / 0);
//!   BBR 2.99 / 2.41 (67 / 238); MTU capped at 1452 2.96 / 2.89 (33 / 45). So the drops explain
//!   the bad rounds, not the level: without any drop the stream stays CPU-bound at 4.3–5.0 CPU
//!   s/GiB (h2 ~2.3), and a 1452-byte MTU costs no throughput, so per-datagram work is not what
//!   bounds it either; the profile is flat inside quinn (AES-GCM ~13 %, memmove ~11 %,
//!   `poll_transmit`, `write_stream_frames`, ACK bookkeeping ~1–3 % each). 4 MiB buffers stay off
//!   for the small-call p99 reason above.
//! - Small unary calls, session 3: a dwarf profile (`perf record --call-graph dwarf` on
//!   `zone-bench --scenario unary-64b-c32 --wire h3`) put ~40 % of the `memmove` samples in
//!   spawning and polling the server's per-request task, whose future was 4.9 KiB (h3's resolve
//!   future alone 2.5 KiB); that phase is boxed now (3.0 KiB, bounded by a test in `server::h3`).
//!   The rate change stayed inside the run-to-run spread. Ours and tonic-h3 burn the same CPU in
//!   the same places (kernel wake-ups ~15 %, malloc/free ~9 %, qpack, quinn), ours ~25 % more
//!   per call, still spread thin.
//! - Session 4 (2026-12-04): the bulk gap was not quinn's per-packet cost but two defects that
//!   kept every connection at Ethernet-size or minimum packets. (1) `mtu_upper_bound` was
//!   65527, but quinn's `EndpointConfig::max_udp_payload_size` stayed at its default 1472, which
//!   both peers announce and which caps the other's search: every loopback connection ran at
//!   1472 (so "a 1452-byte cap costs nothing" above measured two equal settings). (2) With that
//!   lifted, quinn batches up to 10 datagrams of the 65 495-byte MTU into one GSO send, the
//!   kernel refuses anything over 64 KiB with EMSGSIZE, and quinn-udp reports it as sent: the
//!   packets vanish, and after three such loss bursts quinn's black-hole detector drops the MTU
//!   to 1200 for a minute — every server connection of `stream-64k` ended at 1200 (QUIC
//!   statistics, now logged at debug level when a connection ends). `socket::QuicSocket`
//!   splits such batches. `zone-bench --scenario stream-64k --wire h2 h3 --reps 3 --duration 3`
//!   with a 65527 bound: before 4.6–5.7 Gbit/s, 2.7–3.2 CPU s/GiB (H3/H2 0.57–0.62); after
//!   10.5 Gbit/s at 1.24 CPU s/GiB against HTTP/2's 9.8 at 1.47 (H3/H2 1.07 and 0.85), MTU
//!   65 495, no black hole. The MTU search is per connection, and on loopback every probe is
//!   delivered: it added ~1.5 ms to `--scenario connect` (set-up + one call; 2.1 → 3.6 ms; with
//!   discovery off at the same announced size 2.0 ms, so it is the probing, not quinn's larger
//!   receive buffers), and that scenario's fresh endpoint per connection left server
//!   connections behind until the 1024-connection limit refused new ones. Root cause (session
//!   8, quinn-proto trace of `--no-loopback-mtu --quic-mtu 65527 --scenario connect`): about
//!   two clients in three never sent their CONNECTION_CLOSE — "blocked by congestion control"
//!   right after `close()`. quinn-proto 0.11.19 gates the close packet like a full-MTU data
//!   packet, so an MTU probe in flight (57 KB of a ~100 KB window) blocks it; closing stops the
//!   loss timers, nothing unblocks it, the close timer drains the connection, the client's
//!   socket closes, and the server holds the connection until its idle timeout (30 s). That is
//!   quinn-rs/quinn#2785, fixed upstream by #2787 (close packets exempt from the gate), not in a
//!   0.11 release yet. Upstream reports the same for any connection closed while its window is
//!   full (a bulk sender cancelled mid-transfer): the peer learns of it at its idle timeout.
//!   A 9000 bound: 11.6 Gbit/s (H3/H2 0.90), set-up 4.1 ms. So the default stays at quinn's
//!   1452 and a large bound is opt-in (`QuicSettings::mtu_upper_bound`, `zone-bench
//!   --quic-mtu`) for long-lived connections on loopback or jumbo-frame paths.
//! - Small calls, session 4 (noisy VM: the same build's h2 c=32 rate moved 21k–43k calls/s within
//!   the hour, so only same-run ratios count). ~20 % of the samples are the kernel's scheduler
//!   (`finish_task_switch`, `_raw_spin_unlock_irqrestore`: thread wake-ups) and ~14 % glibc
//!   malloc/free (`perf record -g`, `--scenario unary-64b-c32 --wire h3`); `perf stat -e
//!   context-switches` per wire: about twice HTTP/2's switches per call for both HTTP/3 stacks.
//!   With mimalloc as the bench's allocator (a scratch build, not kept) every wire gained and
//!   tonic-h3 reached ~0.97× HTTP/2 at c=32 while ours stayed at 0.68–0.75×, so part of the gap
//!   is ours, not quinn's. A cross pairing (scratch build: our client against tonic-h3's server
//!   and the reverse) ran at 30–36k calls/s against 25–30k for ours on both ends; QUIC statistics
//!   of those runs show our server sending ~0.6 datagrams per call at c=32 where tonic-h3's
//!   sends ~0.28 (our client ~0.95 either way) — our responses leave in more, smaller packets.
//!   Not explained yet: both servers spawn a task per request and write HEADERS, DATA,
//!   trailers the same way, and quinn's settings (tried: quinn's defaults throughout) and the
//!   MTU bound do not change it. The lead for the next step is what wakes our server's quinn
//!   connection driver between a response's writes.
//! - Session 5 (2026-12-04): loopback's MTU without a search (`loopback_mtu`). The client starts
//!   at the route's MTU (65 507 bytes over IPv4). The server cannot: quinn lets any datagram fill
//!   the current MTU while some anti-amplification budget is left, and with a 64 KiB initial MTU
//!   the server sent 3.68× the client's bytes before address validation (`tests/amplification.rs`
//!   caught it; RFC 9000 §8.1 allows 3×). So the server starts at 1200 and searches after the
//!   handshake. quinn's initial congestion window (14 720 bytes) is not scaled for a larger MTU:
//!   a 64 KiB datagram never fit, and the loopback test hung, so it is set by RFC 9002 §7.2's
//!   formula for the known MTU. A 64 KiB probe made `--scenario connect` 0.6 ms slower (2.0 →
//!   2.6–2.8 ms). `perf` put the time in the receiver's `process_payload` and
//!   `frame::Iter::next`: quinn decodes a probe's PADDING one byte, one frame, at a time. So the
//!   server probes 16 KiB at most (no measurable set-up cost). `--scenario stream-64k unary-64k-c32
//!   connect --wire h2 h3 --reps 3 --duration 2`, same session: stream H3/H2 1.08–1.25, CPU s/GiB
//!   0.74–0.86, unary 64 KiB c=32 0.92–0.96, set-up 1.85–2.0 ms (was 2.1).
//! - Small calls, session 5. Unchanged by the MTU work (`--no-loopback-mtu`, interleaved: c=1 p50
//!   ratio 1.50–1.55 with, 1.61–1.66 without). A `yield_now` before the response, first tried
//!   for c=32 batching, looked worse in one noisy run; see the end of this item for what it does. A raw quinn echo (a scratch test, not kept: one bidirectional stream per 80-byte
//!   call, no HTTP/3 and no gRPC, the same settings and a 2-worker runtime) has a p50 of 97–120
//!   µs. In the same minutes, gRPC over HTTP/2 had 147–156 µs and ours 195–217 µs. So quinn
//!   alone leaves a margin of ~40 µs for HTTP/3 and gRPC on top, and ours uses ~100 µs.
//!   `zone-bench --cross-pair` runs each HTTP/3 client against the other stack's server. At c=1 our
//!   client with tonic-h3's server had a p50 of 173 µs, tonic-h3's client with ours 193 µs,
//!   ours with ours 225 µs, tonic-h3 with tonic-h3 178 µs. At c=32 the rates were 17.8k / 17.3k
//!   mixed against 15.1k / 15.8k straight. CPU per call at c=32, both ends together: 81.9 µs
//!   (our client, their server) and 84.0 (theirs, ours) against 96.6 for ours on both ends, 90.0
//!   for theirs on both ends and 74 for HTTP/2. If the costs simply added, the two mixed pairs
//!   would sum to the two straight ones (166 against 187). So pairs of one stack cost more per
//!   call, for both stacks, though by about the size of this VM's noise. Swapping in quinn's
//!   default `TransportConfig` in a scratch build moved c=1 by less than the noise (1.47–1.50
//!   against 1.61–1.67). Context switches per call at c=1 (`perf stat -e context-switches`,
//!   over the measured calls × 4/3 for the warm-up): ours↔ours 2.86, tonic-h3↔tonic-h3 2.79,
//!   our client with their server 1.99, their client with ours 2.85, HTTP/2 1.5. The QUIC
//!   statistics showed why: our server sent 1.13–1.15 datagrams per unary response at c=1, and
//!   tonic-h3's 1.01. About one response in eight left as HEADERS in one datagram and DATA and
//!   trailers in another. Taking the body's ready frames before the HEADERS (so that all writes
//!   follow each other) brought it only to 1.11. One `yield_now` between the handler's return
//!   and the first write brought it to 1.01, and c=1 p50 H3/H2 went from 1.62 / 1.56 / 1.65 to
//!   1.53 / 1.33 / 1.30 (interleaved runs of `--scenario unary-64b-c1 --wire h2 h3 --reps 4
//!   --duration 2`), c=32 unchanged. But it cut `transfer-small` (short server streams) from
//!   1.02–1.05 to 0.68–0.69 of HTTP/2 (interleaved, `--scenario transfer-small --wire h2 h3
//!   --reps 3 --duration 2`), for reasons not yet looked at, so it was taken out again. Next
//!   step: yield only when the body's frames up to the trailers are ready at once (a unary
//!   response), and measure both scenarios. Not ruled out by this: the
//!   per-request JoinSet (a detached spawn gave 2.70–2.85 switches per call, the same); the
//!   STOP_SENDING registration, the empty-DATA filter and the body stall guard (each switched
//!   off in a scratch build, 2.4–2.7 against 2.5, within the noise of that slow hour).
//! - Small calls, session 6 (2026-12-05). Counted instead of timed: syscalls and context switches
//!   per call hardly move with this VM's load, latency does. `perf stat -e
//!   context-switches,syscalls:sys_enter_futex,...` around `zone-bench --scenario unary-64b-c1
//!   --reps 3 --duration 2 --wire W [--cross-pair]`, divided by the calls (× 4/3 for the warm-up);
//!   `perf record -e syscalls:sys_enter_futex --call-graph dwarf` to see who makes them. Three
//!   changes, in this order:
//!   1. Held writes (`backend::write`, `write.rs`): a frame whose successor is ready goes to quinn
//!      with it, so a unary response is one `write_chunks` plus FIN instead of four writes, each
//!      of which woke quinn's driver. Server datagrams per response at c=1: 1.15 → 1.02, which is
//!      what the session-5 yield achieved, without its cost to short server streams.
//!   2. `backend::WakeGate`: h3's connection task polled the accept of request streams, the
//!      accept of unidirectional streams and a read of the control stream every time it ran; each
//!      poll of a pending quinn future takes the connection's state lock, which quinn's driver
//!      holds on the other worker. A quarter of the futex calls were those lock waits and the
//!      wake-ups that released them. Futex calls per call 3.0 → 2.1–2.3, context switches 2.5 →
//!      1.9–2.1: our server now costs what tonic-h3's does (1.9–2.0 with our client).
//!   3. Each request's first poll on the connection's task (`server::h3::poll_once`): the spawned
//!      request task was the third task in a row tokio ran from its LIFO slot, past which tokio
//!      unparks the other worker for every wake-up (~0.6 futex calls per call). Context switches
//!      per call 1.9 → 1.2, below HTTP/2's 1.34. Serving an always-ready body (a zone transfer)
//!      on that task first held quinn's driver in the LIFO slot until the send buffer was full
//!      (`transfer-small` 0.61–0.69 of HTTP/2); `write::BURST` yields every 128 KiB, and it is
//!      back at ~1.0. The same LIFO effect explains why the session-5 yield cut it.
//!
//!   Interleaved A/B (`--scenario unary-64b-c1 unary-64b-c32 unary-64b-c256 transfer-small
//!   stream-64k pingpong --wire h2 h3 --reps 3 --duration 2`), H3/H2 before → after the three:
//!   c=1 p50 1.31–1.41 → 1.17–1.20; c=32 rate 0.70–0.71 → 0.84–0.88; c=256 rate ~1.0 →
//!   1.37–1.45; transfer-small and stream-64k unchanged. What is left at c=1 is CPU, not
//!   scheduling: `perf stat -e probe_libc:malloc` (a uprobe) counts 144 allocations per call
//!   over HTTP/3 against 59 over HTTP/2 (the difference between a 1 s and a 4 s run, so set-up
//!   cancels out). Half of all allocations are in h3 0.0.8's QPACK: `encode_stateless` clones
//!   each field's name and value, Huffman-encodes into a fresh buffer, and the decoder collects
//!   every string into a `Vec` and copies it again into the `HeaderMap` — ~4 allocations per
//!   header field, ~14 fields per call (QPACK without a dynamic table also re-encodes what HPACK
//!   indexes). That is h3's code (tonic-h3 pays it too); an allocation-free stateless encoder
//!   and decoder would be the upstream change.
//!   At c=32 (`perf record -F 4999` on `--scenario unary-64b-c32`, one wire at a time, samples
//!   per 1000 calls): H3 297, HTTP/2 259. QPACK's Huffman coding and header conversion alone are
//!   16.5 of H3's samples (`HuffmanEncoder::put`, `DecodeIter::next`, `Header::try_from`, ...)
//!   and malloc/free 48 against 32, so h3's QPACK is most of the remaining gap there too. h3
//!   0.0.8 is the newest release; a fork merged such a change (0x676e67/http3#73, "optimize
//!   Huffman coding and static table lookup"), and quiche skips Huffman where it would not
//!   shrink a string (cloudflare/quiche#1423; RFC 9204 §4.1.2 makes it optional).
//!   A scratch h3 patch that wrote QPACK strings raw moved c=32 by less than the noise, so the
//!   allocations, not the Huffman coding, are the part worth changing.
//!   Where c=1's time goes (`perf sched record` on `--scenario unary-64b-c1 --reps 1 --duration
//!   1`, then `perf sched timehist`, the middle of the run): worker switch-ins per call 1.52
//!   (HTTP/2 1.47), but each waits 61 µs on average from wake-up to running (HTTP/2 46 µs) —
//!   this VM's cost of waking an idle vCPU — so ~93 µs of a ~216 µs call is scheduling delay
//!   (HTTP/2 ~68 of ~132). The workers' CPU per call is 215 µs against 137 (at c=32 the two are
//!   within 6 %): at c=1 the per-call fixed costs are not amortised — allocations (libc + alloc
//!   +73 samples per 1000 calls), quinn + h3 against h2 + hyper + rustls (+40), our own code
//!   (+30: h3 accept and write paths, the call future).
//! - Small calls, session 7 (2026-12-05): who wakes whom. `perf record -e sched:sched_waking
//!   --call-graph dwarf` around `zone-bench --scenario unary-64b-c1 --wire h3 --reps 1
//!   --duration 1`, each wake-up grouped by its kernel path (futex, epoll) and the first frames
//!   in user code. 0.77 wake-ups per call were tokio unparking the other worker from
//!   `Harness::poll`'s yield path, all of them in `serve_connection`'s task (the harness's
//!   `Core::poll` call resolves to it with `addr2line`): a request served inline ends by dropping
//!   h3's `RequestEnd`, which sends on a channel whose receiver the same task polls in
//!   `accept()`, so the task woke itself while it ran, and tokio treats that as a yield — back of
//!   the queue, unpark a worker to steal it. `server::repoll::Repoll` polls such a future again
//!   at once instead. Wake-ups per call at c=1: 1.32 → 0.00–0.05. Client and server then stay on
//!   one worker, and the c=1 p50 went from ~195 to 25–30 µs, against HTTP/2's 92–150 µs on the
//!   same runs (hyper's tasks still wake the other worker ~1.5 times per call). That win is
//!   scheduling: with one worker (`TOKIO_WORKER_THREADS=1`, both wires) the p50 is 30.3 µs
//!   against HTTP/2's 26.9, so HTTP/3's CPU per call is still ~13 % higher (allocations, above).
//!   At c=32, `perf record -e syscalls:sys_enter_futex` (1.2 per call): about half are glibc
//!   malloc's arena locks (memory freed on the other worker than the one that allocated it:
//!   `bytes` buffers, quinn's send buffer, h3's QPACK strings), a third quinn's connection lock,
//!   which the connection driver holds while it sends. Each call's liveness check was
//!   `close_reason()` under that lock (0.05 futex calls per call; now a flag set by the h3 driver
//!   task). Interleaved A/B on `--scenario unary-64b-c32 --wire h2 h3 --reps 3 --duration 2`:
//!   0.98–1.00 → 1.04–1.05 of HTTP/2. Left: bidi ping-pong is ~2× HTTP/2's p50, and its wake-ups
//!   (1.55 per round trip) come from the client's chain endpoint driver → connection driver →
//!   call task → request-body pump → connection driver, one more than tokio's LIFO cap of three,
//!   so the pump's write unparks the other worker.

pub(crate) mod backend;
mod empty_data;
pub(crate) mod socket;
pub(crate) mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::error::{Error, Kind};

/// The congestion controller of QUIC connections.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CongestionControl {
    /// CUBIC (RFC 9438), quinn's default.
    #[default]
    Cubic,
    /// BBR (quinn's experimental implementation): tolerates random loss.
    Bbr,
    /// NewReno (RFC 9002 §7).
    NewReno,
}

/// QUIC transport settings of an [`Endpoint`](crate::Endpoint) or [`Server`](crate::Server).
///
/// Start from `QuicSettings::default()` and change fields.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct QuicSettings {
    /// Streams (= concurrent calls) the peer may open at once; default 1024.
    pub max_concurrent_bidi_streams: u32,
    /// Receive window of one stream in bytes; default 2 MiB.
    pub stream_receive_window: u32,
    /// Receive window of the whole connection in bytes; default 16 MiB.
    pub receive_window: u32,
    /// Most unacknowledged bytes in flight; default 16 MiB.
    pub send_window: u64,
    /// Closes a connection after this long without any packet; default 30 s.
    pub idle_timeout: Duration,
    /// Sends PING frames at this interval to keep an idle connection (and NAT bindings) alive.
    pub keep_alive_interval: Option<Duration>,
    /// The congestion controller; default Cubic.
    pub congestion: CongestionControl,
    /// Generic segmentation offload (GSO) for sending; on by default (quinn's default).
    pub segmentation_offload: bool,
    /// SO_RCVBUF / SO_SNDBUF of the UDP socket in bytes; default 1 MiB (capped by the kernel).
    pub udp_buffer_size: usize,
    /// Largest UDP payload path-MTU discovery (RFC 9000 §14.3) probes for, and the
    /// `max_udp_payload_size` announced to the peer (§18.2) so its search may go as high;
    /// default 1452 (quinn's: Ethernet less IPv6 and UDP headers). Values outside 1200..=65527
    /// are clamped.
    ///
    /// Loopback peers need no search (see [`QuicSettings::loopback_mtu`]). Other paths with a
    /// larger MTU — jumbo frames — carry bulk data with less work per byte at a higher bound,
    /// but every connection then pays for the search: on loopback, where each probe is
    /// delivered, a 65527 bound added ~1.5 ms to connection set-up and one call (`zone-bench
    /// --scenario connect --no-loopback-mtu --quic-mtu 65527`). Raise it where connections are
    /// long-lived.
    pub mtu_upper_bound: u16,
    /// Connections with a loopback peer use the loopback interface's MTU (read from the kernel's
    /// route, ~64 KiB) instead of searching up to `mtu_upper_bound`; default on.
    ///
    /// The path to a loopback peer is this host, so its MTU is known without a search, as TCP
    /// takes its segment size from the interface (RFC 9000 §14.1 lets a sender use a size it
    /// believes the path supports). A client starts at it; a server, whose first flight the
    /// anti-amplification limit bounds (RFC 9000 §8.1), searches up to 16 KiB after the
    /// handshake (a larger probe costs its receiver more than it saves). Bulk
    /// data on loopback then moves in datagrams of 16–64 KiB instead of ~1.4 KiB: about twice
    /// the throughput at two-thirds of the CPU per byte, with none of the set-up cost of a
    /// searched large `mtu_upper_bound`. Linux only (elsewhere the route MTU is not
    /// read and this does nothing). The endpoint announces quinn's largest
    /// `max_udp_payload_size` so that its loopback peers may do the same. quinn sizes an
    /// endpoint's receive buffer from that value (payload × 64 GRO segments × 32 messages):
    /// 128 MiB of address space instead of 3 MiB, of which only the pages datagrams land in
    /// become resident.
    pub loopback_mtu: bool,
}

impl Default for QuicSettings {
    fn default() -> Self {
        QuicSettings {
            max_concurrent_bidi_streams: 1024,
            stream_receive_window: crate::STREAM_WINDOW,
            receive_window: crate::CONNECTION_WINDOW,
            send_window: u64::from(crate::CONNECTION_WINDOW),
            idle_timeout: Duration::from_secs(30),
            keep_alive_interval: None,
            congestion: CongestionControl::Cubic,
            segmentation_offload: true,
            udp_buffer_size: 1024 * 1024,
            mtu_upper_bound: 1452,
            loopback_mtu: true,
        }
    }
}

/// How a connection uses a path MTU known in advance (a loopback peer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KnownMtu {
    /// The client starts at it.
    StartAt(u16),
    /// The server starts at QUIC's minimum and searches up to it once the handshake is done.
    /// Before the client's address is validated a server may send only three times the bytes it
    /// received (RFC 9000 §8.1), and quinn lets any datagram fill the current MTU once some
    /// budget is left, so a large initial MTU would overshoot that limit (caught by
    /// tests/amplification.rs).
    SearchTo(u16),
}

impl KnownMtu {
    fn mtu(self) -> u16 {
        match self {
            KnownMtu::StartAt(mtu) | KnownMtu::SearchTo(mtu) => mtu,
        }
    }
}

impl QuicSettings {
    /// The transport config for connections whose path MTU is not known in advance.
    pub(crate) fn transport_config(&self) -> Result<Arc<TransportConfig>, Error> {
        self.build_transport_config(None)
    }

    /// A client's transport config for a connection to `peer`: loopback peers start at the
    /// loopback MTU (see [`QuicSettings::loopback_mtu`]).
    pub(crate) fn transport_config_to(
        &self,
        peer: SocketAddr,
    ) -> Result<Arc<TransportConfig>, Error> {
        self.build_transport_config(self.known_path_mtu(peer).map(KnownMtu::StartAt))
    }

    /// The UDP payload size of the path to `peer` when it is known without probing: only for
    /// loopback peers, with [`QuicSettings::loopback_mtu`] on.
    pub(crate) fn known_path_mtu(&self, peer: SocketAddr) -> Option<u16> {
        if self.loopback_mtu {
            loopback_payload_size(peer)
        } else {
            None
        }
    }

    /// The largest datagram the endpoint accepts, announced to every peer as
    /// `max_udp_payload_size` (RFC 9000 §18.2), which caps the peer's datagrams.
    fn max_udp_payload_size(&self) -> u16 {
        let bound = if self.loopback_mtu {
            MAX_UDP_PAYLOAD
        } else {
            self.mtu_upper_bound
        };
        bound.clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
    }

    fn build_transport_config(
        &self,
        known: Option<KnownMtu>,
    ) -> Result<Arc<TransportConfig>, Error> {
        let mut t = TransportConfig::default();
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .map_err(|e| Error::with(Kind::Config, e).context("QUIC idle timeout"))?;
        t.max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_bidi_streams))
            .stream_receive_window(VarInt::from_u32(self.stream_receive_window))
            .receive_window(VarInt::from_u32(self.receive_window))
            .send_window(self.send_window)
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(self.keep_alive_interval)
            .enable_segmentation_offload(self.segmentation_offload);
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.mtu_upper_bound.max(known.map_or(0, KnownMtu::mtu)));
        // A client starts at the known MTU. Its search has nothing left to find but stays on, so
        // that after a black hole (a loss of large datagrams) it climbs back. A server runs
        // quinn's binary search from 1200 bytes after the handshake: up to the known MTU, or less
        // if the peer announced a smaller `max_udp_payload_size` (quinn's default 1472, say).
        // The probes go one per round trip; on loopback they cost a new connection nothing
        // measurable (`--scenario connect`: 2.05–2.14 ms, the same as with a single probe).
        if let Some(KnownMtu::StartAt(known)) = known {
            t.initial_mtu(known);
        }
        t.mtu_discovery_config(Some(mtu));
        // Sized for the known MTU (RFC 9002 §7.2's formula with it): quinn's default assumes
        // 1200-byte datagrams and is not scaled for a larger MTU — with 64 KiB datagrams its
        // 14 720 bytes would hold none, and an unacknowledged 64 KiB probe (sent outside
        // congestion control but counted in flight) would block every other packet until its
        // ACK, which the peer may delay by up to its max_ack_delay.
        let initial_window = known.map(|k| initial_window(k.mtu()));
        match self.congestion {
            CongestionControl::Cubic => {
                let mut cc = CubicConfig::default();
                if let Some(window) = initial_window {
                    cc.initial_window(window);
                }
                t.congestion_controller_factory(Arc::new(cc))
            }
            CongestionControl::Bbr => {
                let mut cc = BbrConfig::default();
                if let Some(window) = initial_window {
                    cc.initial_window(window);
                }
                t.congestion_controller_factory(Arc::new(cc))
            }
            CongestionControl::NewReno => {
                let mut cc = NewRenoConfig::default();
                if let Some(window) = initial_window {
                    cc.initial_window(window);
                }
                t.congestion_controller_factory(Arc::new(cc))
            }
        };
        Ok(Arc::new(t))
    }
}

/// quinn's smallest and largest UDP payload (RFC 9000 §14: 1200; the UDP length field).
const MIN_UDP_PAYLOAD: u16 = 1200;
const MAX_UDP_PAYLOAD: u16 = 65_527;

/// The largest MTU probe a server sends to reach a known path MTU. A probe is a PING padded to
/// its size, and quinn 0.11 decodes PADDING one byte (one frame) at a time: the receiver of a
/// 64 KiB probe spent ~0.6 ms on it (`perf`: `process_payload` and `frame::Iter::next`), which
/// a short connection's first call waits out (`zone-bench --scenario connect`: set-up + one
/// call 2.0 ms with 16 KiB, 2.6–2.8 ms with 64 KiB). 16 KiB datagrams already spread the
/// per-datagram work thin: `--scenario stream-64k` ran at 1.20× HTTP/2 with it, 1.08× with
/// 64 KiB in the same session (the VM's noise is larger than that difference).
const MAX_PROBE: u16 = 16 * 1024;

/// RFC 9002 §7.2: the initial congestion window for `max_datagram_size`,
/// min(10 * max_datagram_size, max(14720, 2 * max_datagram_size)).
fn initial_window(max_datagram_size: u16) -> u64 {
    let size = u64::from(max_datagram_size);
    (10 * size).min(14_720.max(2 * size))
}

/// The UDP payload a datagram to a loopback `peer` can carry: the loopback route's MTU (the
/// kernel's `IP_MTU`/`IPV6_MTU` of a socket connected to `peer`; connecting a UDP socket sends
/// nothing) less the IP and UDP headers. `None` for other peers, whose path may hold smaller links.
fn loopback_payload_size(peer: SocketAddr) -> Option<u16> {
    // A v4-mapped peer on a dual-stack socket travels as IPv4.
    let ip = peer.ip().to_canonical();
    if !ip.is_loopback() {
        return None;
    }
    let route_mtu = match route_mtu(SocketAddr::new(ip, peer.port())) {
        Ok(mtu) => mtu,
        Err(err) => {
            tracing::debug!(%peer, error = %err, "could not read the loopback route's MTU");
            return None;
        }
    };
    // IPv4: 20-byte header, and the total length field caps a packet at 65 535 bytes.
    // IPv6: 40-byte header outside the payload length. UDP: 8 bytes.
    let payload = if ip.is_ipv4() {
        route_mtu.min(65_535).saturating_sub(28)
    } else {
        route_mtu.saturating_sub(48)
    };
    let payload = u16::try_from(payload).unwrap_or(MAX_UDP_PAYLOAD);
    (payload > MIN_UDP_PAYLOAD).then(|| payload.min(MAX_UDP_PAYLOAD))
}

/// The wildcard address of `peer`'s family, any port: where a local socket that talks to
/// `peer` binds.
pub(crate) fn wildcard_for(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    }
}

#[cfg(target_os = "linux")]
fn route_mtu(peer: SocketAddr) -> std::io::Result<u32> {
    let socket = std::net::UdpSocket::bind(wildcard_for(peer))?;
    socket.connect(peer)?;
    let mtu = if peer.is_ipv4() {
        rustix::net::sockopt::ip_mtu(&socket)
    } else {
        rustix::net::sockopt::ipv6_mtu(&socket)
    };
    mtu.map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn route_mtu(_peer: SocketAddr) -> std::io::Result<u32> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "route MTU is read on Linux only",
    ))
}

/// The quinn client config for one endpoint (TLS 1.3 with ALPN `h3`).
pub(crate) fn client_config(
    tls: Arc<rustls::ClientConfig>,
    settings: &QuicSettings,
) -> Result<quinn::ClientConfig, Error> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| Error::with(Kind::Config, e).context("QUIC client TLS"))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(settings.transport_config()?);
    Ok(config)
}

/// The quinn server config (TLS 1.3 with ALPN `h3`). Early data (0-RTT) stays off: rustls'
/// `max_early_data_size` defaults to 0, which quinn maps to "no 0-RTT" (RFC 9001 §4.6.1).
pub(crate) fn server_config(
    tls: rustls::ServerConfig,
    settings: &QuicSettings,
) -> Result<quinn::ServerConfig, Error> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| Error::with(Kind::Config, e).context("QUIC server TLS"))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(settings.transport_config()?);
    Ok(config)
}

/// The server config for a connection from `peer`, when it differs from the endpoint's `base`:
/// a loopback peer's path MTU is known ([`QuicSettings::loopback_mtu`]) and searched for after
/// the handshake, up to [`MAX_PROBE`]. `None` = use `base`.
pub(crate) fn server_config_for(
    base: &quinn::ServerConfig,
    settings: &QuicSettings,
    peer: SocketAddr,
) -> Option<Arc<quinn::ServerConfig>> {
    let mtu = settings.known_path_mtu(peer)?;
    match settings.build_transport_config(Some(KnownMtu::SearchTo(mtu.min(MAX_PROBE)))) {
        Ok(transport) => {
            let mut config = base.clone();
            config.transport_config(transport);
            Some(Arc::new(config))
        }
        Err(err) => {
            // Not reached: the same settings built `base`'s transport config.
            tracing::debug!(%peer, error = %err, "per-peer QUIC transport config");
            None
        }
    }
}

/// A UDP socket bound to `addr` with `settings`' buffer sizes, for a quinn endpoint.
fn udp_socket(
    addr: std::net::SocketAddr,
    settings: &QuicSettings,
) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer than asked for still works, only with more drops under load.
    if let Err(err) = socket.set_recv_buffer_size(settings.udp_buffer_size) {
        tracing::debug!(error = %err, "could not set the UDP receive buffer size");
    }
    if let Err(err) = socket.set_send_buffer_size(settings.udp_buffer_size) {
        tracing::debug!(error = %err, "could not set the UDP send buffer size");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A quinn endpoint on `addr`: a server when `server` is given, else a client.
/// `reset_secret` keys the stateless-reset tokens (a stable one lets a restarted server reset its
/// predecessor's connections, RFC 9000 §10.3); `None` = a random key, as quinn does by default.
pub(crate) fn endpoint(
    addr: std::net::SocketAddr,
    server: Option<quinn::ServerConfig>,
    reset_secret: Option<[u8; 32]>,
    settings: &QuicSettings,
) -> std::io::Result<quinn::Endpoint> {
    let socket = udp_socket(addr, settings)?;
    let mut config = match reset_secret {
        Some(secret) => {
            let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                &secret,
            )));
            // quinn's connection IDs carry a keyed check that drops packets with forged IDs
            // before any work; with its per-process random key a restarted server would also
            // drop (not reset) its predecessor's connections. Keyed from the same secret.
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(b"grpc-h3 connection id key\0");
            ctx.update(&secret);
            let mut cid_key = [0; 8];
            cid_key.copy_from_slice(&ctx.finish().as_ref()[..8]);
            let cid_key = u64::from_le_bytes(cid_key);
            config.cid_generator(move || {
                Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
            });
            config
        }
        None => quinn::EndpointConfig::default(),
    };
    // The largest datagram we accept, sent to the peer as `max_udp_payload_size` (RFC 9000
    // §18.2): it caps the peer's datagrams. quinn's 1472 would hold loopback and jumbo paths to
    // Ethernet size whatever `mtu_upper_bound` and `loopback_mtu` say.
    config
        .max_udp_payload_size(settings.max_udp_payload_size())
        .map_err(std::io::Error::other)?;
    quinn::Endpoint::new_with_abstract_socket(
        config,
        server,
        socket::QuicSocket::wrap(socket)?,
        Arc::new(quinn::TokioRuntime),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Sends `total` bytes from a loopback server to a client, both built as the crate builds them
    /// (per-peer transport configs included); returns the server's and the client's statistics.
    async fn transfer(
        settings: &QuicSettings,
        total: usize,
    ) -> (quinn::ConnectionStats, quinn::ConnectionStats) {
        transfer_between(settings, settings, total).await
    }

    /// [`transfer`] with different settings for the server and the client.
    async fn transfer_between(
        settings: &QuicSettings,
        client_settings: &QuicSettings,
        total: usize,
    ) -> (quinn::ConnectionStats, quinn::ConnectionStats) {
        let certs = dev_certs::DevCerts::generate().unwrap();
        let tls = crate::ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)
            .unwrap()
            .server_config(crate::tls::ALPN_H3)
            .unwrap();
        let base = server_config(tls, settings).unwrap();
        let server = endpoint(
            "127.0.0.1:0".parse().unwrap(),
            Some(base.clone()),
            None,
            settings,
        )
        .unwrap();
        let server_addr = server.local_addr().unwrap();
        let mut client_tls = crate::tls::ClientTls::default();
        client_tls.roots = Some(crate::tls::roots_from_pem(&certs.ca_pem, "CA").unwrap());
        let client_tls = client_tls.client_config(crate::tls::ALPN_H3).unwrap();
        let client = endpoint("127.0.0.1:0".parse().unwrap(), None, None, client_settings).unwrap();
        let mut config = client_config(client_tls, client_settings).unwrap();
        config.transport_config(client_settings.transport_config_to(server_addr).unwrap());

        let server_settings = settings.clone();
        let sender = tokio::spawn(async move {
            let incoming = server.accept().await.unwrap();
            let peer = incoming.remote_address();
            let conn = match server_config_for(&base, &server_settings, peer) {
                Some(config) => incoming.accept_with(config),
                None => incoming.accept(),
            }
            .unwrap()
            .await
            .unwrap();
            let mut send = conn.open_uni().await.unwrap();
            let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
            for _ in 0..total / chunk.len() {
                send.write_chunk(chunk.clone()).await.unwrap();
            }
            send.finish().unwrap();
            let _ = send.stopped().await;
            let stats = conn.stats();
            conn.close(0u32.into(), b"");
            stats
        });
        // Bounded: a connection stuck (say, behind a congestion window smaller than one
        // datagram) fails the test instead of hanging it.
        let conn = tokio::time::timeout(Duration::from_secs(60), async {
            let conn = client
                .connect_with(config, server_addr, "localhost")
                .unwrap()
                .await
                .unwrap();
            let mut recv = conn.accept_uni().await.unwrap();
            let mut received = 0;
            while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.unwrap() {
                received += chunk.bytes.len();
            }
            assert_eq!(received, total);
            conn
        })
        .await
        .expect("transfer stalled");
        let server_stats = tokio::time::timeout(Duration::from_secs(30), sender)
            .await
            .unwrap()
            .unwrap();
        (server_stats, conn.stats())
    }

    /// By default a loopback client starts at the loopback route's MTU and never probes (the path
    /// is this host); the server searches up to `MAX_PROBE`. A bulk transfer keeps that size (no black hole: GSO batches
    /// of such datagrams exceed 64 KiB and need `socket`'s split).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loopback_connections_use_the_route_mtu() {
        let settings = QuicSettings::default();
        let Some(mtu) = settings.known_path_mtu("127.0.0.1:443".parse().unwrap()) else {
            eprintln!("skipped: the loopback route's MTU is not readable here (non-Linux?)");
            return;
        };
        assert!(mtu > 1472, "loopback payload {mtu}");
        let (server, client) = transfer(&settings, 64 * 1024 * 1024).await;
        let client = &client.path;
        assert_eq!(client.current_mtu, mtu, "{client:?}");
        assert_eq!(client.sent_plpmtud_probes, 0, "{client:?}");
        assert_eq!(client.black_holes_detected, 0, "{client:?}");
        // The server may not start there (tests/amplification.rs): it searches up to MAX_PROBE,
        // to within quinn's default minimum change of 20 bytes.
        let server = &server.path;
        let target = mtu.min(MAX_PROBE);
        assert!(
            (target - 20..=target).contains(&server.current_mtu),
            "{server:?}"
        );
        assert_eq!(server.lost_plpmtud_probes, 0, "{server:?}");
        assert_eq!(server.black_holes_detected, 0, "{server:?}");
    }

    /// A loopback client announcing a small `max_udp_payload_size` (as quinn's defaults do) still
    /// gets the server's datagrams up to that size: the server searches rather than jumping to
    /// a size the client may refuse.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_announcing_less_caps_the_servers_search() {
        let client_settings = QuicSettings {
            loopback_mtu: false,
            ..QuicSettings::default()
        };
        let (server, _) =
            transfer_between(&QuicSettings::default(), &client_settings, 4 * 1024 * 1024).await;
        let path = &server.path;
        assert!((1452 - 20..=1452).contains(&path.current_mtu), "{path:?}");
    }

    /// Switched off, loopback connections start at QUIC's minimum and search no higher than
    /// `mtu_upper_bound`, as on any other path.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_loopback_mtu_connections_search_up_to_the_bound() {
        let settings = QuicSettings {
            loopback_mtu: false,
            ..QuicSettings::default()
        };
        assert_eq!(
            settings.known_path_mtu("127.0.0.1:443".parse().unwrap()),
            None
        );
        let (server, _) = transfer(&settings, 4 * 1024 * 1024).await;
        assert!(server.path.current_mtu <= 1452, "{:?}", server.path);
    }

    /// Only loopback peers have a known path MTU; a v4-mapped loopback peer (on a dual-stack
    /// socket) is one, and travels as IPv4.
    #[test]
    fn only_loopback_paths_are_known() {
        let settings = QuicSettings::default();
        for peer in ["192.0.2.1:443", "[2001:db8::1]:443", "0.0.0.0:443"] {
            assert_eq!(
                settings.known_path_mtu(peer.parse().unwrap()),
                None,
                "{peer}"
            );
        }
        let v4 = settings.known_path_mtu("127.0.0.1:443".parse().unwrap());
        if let Some(v4) = v4 {
            assert!((1473..=65_507).contains(&v4), "{v4}");
        }
        let mapped = settings.known_path_mtu("[::ffff:127.0.0.1]:443".parse().unwrap());
        assert_eq!(mapped, v4);
        if let Some(v6) = settings.known_path_mtu("[::1]:443".parse().unwrap()) {
            assert!((1473..=65_488).contains(&v6), "{v6}");
        }
    }

    /// The initial congestion window follows RFC 9002 §7.2 for the known MTU, so the first flight
    /// may hold two full datagrams (quinn's default of 14 720 bytes would hold none of 64 KiB).
    #[test]
    fn initial_window_scales_with_the_datagram_size() {
        assert_eq!(initial_window(1200), 12_000);
        assert_eq!(initial_window(1452), 14_520);
        assert_eq!(initial_window(9000), 18_000);
        assert_eq!(initial_window(65_507), 131_014);
    }

    /// A loopback-MTU endpoint announces that it takes quinn's largest datagrams; otherwise the
    /// announcement is the search bound, within QUIC's limits.
    #[test]
    fn announced_payload_size_follows_the_setting() {
        let on = QuicSettings::default();
        assert_eq!(on.max_udp_payload_size(), MAX_UDP_PAYLOAD);
        let off = QuicSettings {
            loopback_mtu: false,
            mtu_upper_bound: 9000,
            ..QuicSettings::default()
        };
        assert_eq!(off.max_udp_payload_size(), 9000);
        let tiny = QuicSettings {
            loopback_mtu: false,
            mtu_upper_bound: 100,
            ..QuicSettings::default()
        };
        assert_eq!(tiny.max_udp_payload_size(), MIN_UDP_PAYLOAD);
    }

    /// With a raised `mtu_upper_bound` (and the known loopback MTU off), a bulk transfer on
    /// loopback searches up to loopback's large MTU and keeps it. Two defects held it to 1472 or
    /// 1200 bytes: quinn's default `max_udp_payload_size` (1472) capped the peer's MTU search, and
    /// with it lifted, GSO batches over 64 KiB were lost without an error, which quinn's
    /// black-hole detector took for an MTU black hole (see `socket`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_transfer_on_loopback_keeps_a_large_mtu() {
        let settings = QuicSettings {
            mtu_upper_bound: 65_527,
            loopback_mtu: false,
            ..QuicSettings::default()
        };
        let (stats, _) = transfer(&settings, 256 * 1024 * 1024).await;
        assert!(
            stats.path.current_mtu > 1472,
            "sender's MTU {} (black holes {}, lost packets {})",
            stats.path.current_mtu,
            stats.path.black_holes_detected,
            stats.path.lost_packets
        );
        assert_eq!(stats.path.black_holes_detected, 0, "{:?}", stats.path);
    }
}
