//! Model-based test of the delivery ledger: random sequences of events — polls, batches,
//! commits, commits whose reply is lost, eager and cooperative rebalances, zombies that lose
//! their partitions without being told, kills at any point, restarts — against a reference
//! model of the topic and the table. After every step: the table holds each offset at most
//! once, and exactly the offsets below each partition's stored offset (synchronized delivery).
//! At quiescence: every offset exactly once.
//!
//! The shell here does what `pipeline.rs` and `kafka.rs` do with the ledger, with the broker
//! and PostgreSQL replaced by the models; the fence is `pgsink.commit_offsets`'s rule.
//!
//! Guaranteed delivery runs through the same events without the fence, positions coming
//! from Kafka's committed offsets (committed after each database commit, and sometimes lost):
//! after every step nothing below a committed Kafka offset is missing from the table, and at
//! quiescence every offset is loaded at least once.
//!
//! `PGSINK_MODEL_SEQUENCES=N` runs N sequences per mode (default 3000); `PGSINK_MODEL_SEED=S`
//! replays one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::ledger::{Ledger, OffsetMove, Partition};

/// splitmix64: small, seedable, good enough to pick events.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const TOPIC: &str = "t";

fn part(p: i32) -> Partition {
    (TOPIC.to_string(), p)
}

/// The table and `pgsink.offsets`.
#[derive(Default)]
struct Table {
    rows: BTreeMap<(i32, i64), u32>,
    stored: BTreeMap<i32, i64>,
    /// Guaranteed delivery: no offsets in the database, no fence.
    unfenced: bool,
    /// Kafka's committed offsets (the position of guaranteed delivery).
    kafka: BTreeMap<i32, i64>,
}

impl Table {
    /// `pgsink.commit_offsets`: a stored offset must equal the commit's `from`; no stored row
    /// accepts any `from`. All or nothing, with the rows.
    fn commit(&mut self, rows: &[(i32, i64)], moves: &[OffsetMove]) -> bool {
        if self.unfenced {
            for &r in rows {
                *self.rows.entry(r).or_default() += 1;
            }
            return true;
        }
        let fenced = moves
            .iter()
            .any(|m| self.stored.get(&m.partition).is_some_and(|&s| s != m.from));
        if fenced {
            return false;
        }
        for m in moves {
            self.stored.insert(m.partition, m.next);
        }
        for &r in rows {
            *self.rows.entry(r).or_default() += 1;
        }
        true
    }
}

enum Command {
    Rows(u64, Vec<(i32, i64)>),
    Commit(u64, Vec<OffsetMove>),
}

/// The writer: executes commands in order; a failed commit drops its epoch.
#[derive(Default)]
struct Writer {
    queue: VecDeque<Command>,
    pending: Vec<(i32, i64)>,
    pending_epoch: u64,
    min_epoch: u64,
    outcomes: VecDeque<bool>,
}

impl Writer {
    /// Executes one command. `lose_reply`: the commit reaches the database but the connection
    /// breaks before its reply, so the writer runs it again on a new connection.
    fn step(&mut self, table: &mut Table, lose_reply: bool) -> Option<String> {
        let command = self.queue.pop_front()?;
        let epoch = match &command {
            Command::Rows(e, _) | Command::Commit(e, _) => *e,
        };
        if epoch < self.min_epoch {
            if matches!(command, Command::Commit(..)) {
                self.outcomes.push_back(false);
            }
            return None;
        }
        if epoch > self.pending_epoch {
            self.pending.clear();
            self.pending_epoch = epoch;
        }
        match command {
            Command::Rows(_, rows) => {
                self.pending.extend(rows);
                None
            }
            Command::Commit(_, moves) => {
                let mut ok = table.commit(&self.pending, &moves);
                let what = format!(
                    "commit epoch {epoch} rows {:?} moves {:?}: {ok}",
                    self.pending,
                    moves
                        .iter()
                        .map(|m| (m.partition, m.from, m.next))
                        .collect::<Vec<_>>()
                );
                if ok && lose_reply {
                    ok = table.commit(&self.pending, &moves);
                }
                self.pending.clear();
                if !ok {
                    self.min_epoch = epoch + 1;
                }
                self.outcomes.push_back(ok);
                Some(what)
            }
        }
    }
}

/// librdkafka's consumer, as far as delivery is concerned.
#[derive(Default)]
struct Consumer {
    /// Assigned partitions and their fetch positions.
    positions: BTreeMap<i32, i64>,
    /// Fetched, not yet polled (seek and unassign purge a partition's entries).
    queue: VecDeque<(i32, i64)>,
    /// Delivered since each partition was last positioned (to deliver one again: librdkafka's
    /// version barrier keeps messages of an earlier position out, so only these can recur).
    delivered: Vec<(i32, i64)>,
}

/// One pgsink process: consumer, ledger, batch being built, writer.
#[derive(Default)]
struct Process {
    alive: bool,
    consumer: Consumer,
    ledger: Ledger,
    batch: Vec<(i32, i64)>,
    writer: Writer,
}

struct World {
    rng: Rng,
    logs: Vec<Vec<i64>>,
    table: Table,
    procs: Vec<Process>,
    /// The group's view: who owns each partition.
    owner: BTreeMap<i32, usize>,
    /// Revocations a zombie has not been told of yet: (process, partition).
    untold: Vec<(usize, i32)>,
    cooperative: bool,
    trace: Vec<String>,
}

impl World {
    fn new(seed: u64, synchronized: bool) -> World {
        let mut rng = Rng(seed);
        let partitions = 1 + rng.below(3) as usize;
        let logs = (0..partitions)
            .map(|_| {
                let mut offsets = Vec::new();
                let mut o = 0;
                for _ in 0..rng.below(12) {
                    offsets.push(o);
                    o += 1 + if rng.chance(20) {
                        rng.below(3) as i64
                    } else {
                        0
                    };
                }
                offsets
            })
            .collect();
        let cooperative = rng.chance(50);
        let procs = (0..2).map(|_| Process::default()).collect();
        World {
            rng,
            logs,
            table: Table {
                unfenced: !synchronized,
                ..Table::default()
            },
            procs,
            owner: BTreeMap::new(),
            untold: Vec::new(),
            cooperative,
            trace: Vec::new(),
        }
    }

    fn produce(&mut self) {
        let p = self.rng.below(self.logs.len() as u64) as usize;
        let log = &mut self.logs[p];
        let next = log.last().map_or(0, |o| o + 1 + self.rng.below(2) as i64);
        log.push(next);
    }

    // --- the shell: what pipeline.rs and kafka.rs do with the ledger ---

    /// Settles outcomes the writer has reported.
    fn settle(&mut self, i: usize) {
        let pr = &mut self.procs[i];
        while let Some(ok) = pr.writer.outcomes.pop_front() {
            if ok {
                let moves = pr.ledger.committed();
                // Kafka's copy (guaranteed delivery's position); an async commit may be lost.
                if !self.rng.chance(10) {
                    for m in moves {
                        self.table.kafka.insert(m.partition, m.next);
                    }
                }
            } else {
                pr.ledger.failed();
            }
        }
    }

    /// Runs the writer until the commit in flight is settled (the consume thread blocks on it).
    fn wait_in_flight(&mut self, i: usize) {
        while self.procs[i].ledger.in_flight() {
            if self.procs[i].writer.outcomes.is_empty() {
                let lose = self.rng.chance(5);
                self.writer_step(i, lose);
            }
            self.settle(i);
        }
    }

    fn writer_step(&mut self, i: usize, lose_reply: bool) {
        if let Some(what) = self.procs[i].writer.step(&mut self.table, lose_reply) {
            self.trace.push(format!("p{i} {what}"));
        }
    }

    fn commit(&mut self, i: usize) {
        let pr = &mut self.procs[i];
        if let Some(moves) = pr.ledger.plan() {
            let epoch = pr.ledger.epoch();
            pr.writer.queue.push_back(Command::Commit(epoch, moves));
        }
    }

    fn rewind(&mut self, i: usize) {
        // The commit in flight moves the stored offsets (or not): settle it before reading them.
        self.wait_in_flight(i);
        let pr = &mut self.procs[i];
        let targets = pr.ledger.rewind();
        pr.batch.clear();
        for resume in targets {
            let p = resume.partition.1;
            let target = self.table.stored.get(&p).copied().or(resume.from);
            if let (true, Some(offset)) = (resume.must_seek(target), target) {
                pr.consumer.queue.retain(|&(q, _)| q != p);
                pr.consumer.delivered.retain(|&(q, _)| q != p);
                pr.consumer.positions.insert(p, offset);
            }
            pr.ledger.resumed(&resume.partition, target);
        }
        self.trace
            .push(format!("p{i} rewinds to epoch {}", pr.ledger.epoch()));
    }

    fn poll(&mut self, i: usize) {
        let stale = self.rng.chance(5);
        let pr = &mut self.procs[i];
        // Fetch a few messages of each assigned partition into the queue.
        for (&p, position) in pr.consumer.positions.iter_mut() {
            let start = *position;
            for &o in self.logs[p as usize]
                .iter()
                .filter(|&&o| o >= start)
                .take(3)
            {
                pr.consumer.queue.push_back((p, o));
                *position = o + 1;
            }
        }
        let message = if stale && !pr.consumer.delivered.is_empty() {
            let k = (self.rng.next() as usize) % pr.consumer.delivered.len();
            Some(pr.consumer.delivered[k])
        } else {
            pr.consumer.queue.pop_front()
        };
        if let Some((p, o)) = message {
            pr.consumer.delivered.push((p, o));
            if pr.ledger.admit(TOPIC, p, o) {
                pr.batch.push((p, o));
            }
        }
    }

    fn send(&mut self, i: usize) {
        let pr = &mut self.procs[i];
        if pr.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut pr.batch);
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for &(p, o) in &batch {
            let n = next.entry(p).or_default();
            *n = (*n).max(o + 1);
        }
        pr.ledger.sent(next.iter().map(|(&p, &n)| (TOPIC, p, n)));
        pr.writer
            .queue
            .push_back(Command::Rows(pr.ledger.epoch(), batch));
    }

    /// The revoke callback: commit what the writer holds, then release.
    fn revoke(&mut self, i: usize, partitions: &[i32]) {
        // Sometimes the commit before the release is not made (the writer failed, or the
        // consume loop has made its final commit): the ledger must then keep the released
        // partitions' rows out of every later commit.
        let commit = !self.rng.chance(10);
        self.release(i, partitions, commit);
    }

    fn release(&mut self, i: usize, partitions: &[i32], commit: bool) {
        let ps: Vec<Partition> = partitions.iter().map(|&p| part(p)).collect();
        if commit && self.procs[i].ledger.revoke(&ps) {
            self.wait_in_flight(i);
            if !self.procs[i].ledger.rewind_due() {
                self.commit(i);
                self.wait_in_flight(i);
            }
        }
        let pr = &mut self.procs[i];
        pr.batch.retain(|(p, _)| !partitions.contains(p));
        pr.ledger.forget(&ps);
        for p in partitions {
            pr.consumer.positions.remove(p);
            pr.consumer.queue.retain(|(q, _)| q != p);
            pr.consumer.delivered.retain(|(q, _)| q != p);
        }
        self.trace.push(format!(
            "p{i} revoked {partitions:?} (commit first: {commit})"
        ));
    }

    /// The assign callback: start at the stored offsets (else at Kafka's: earliest here).
    fn assign(&mut self, i: usize, partitions: &[i32]) {
        let pr = &mut self.procs[i];
        let starts: Vec<(Partition, Option<i64>)> = partitions
            .iter()
            .map(|&p| (part(p), self.table.stored.get(&p).copied()))
            .collect();
        for (p, start) in &starts {
            if pr.consumer.positions.contains_key(&p.1) {
                // librdkafka refuses to assign an assigned partition: nothing is repositioned.
                continue;
            }
            pr.consumer.queue.retain(|(q, _)| *q != p.1);
            pr.consumer.delivered.retain(|(q, _)| *q != p.1);
            // No stored offset: Kafka's committed offset, else auto.offset.reset = earliest.
            let kafka = self.table.kafka.get(&p.1).copied().unwrap_or(0);
            pr.consumer.positions.insert(p.1, start.unwrap_or(kafka));
        }
        pr.ledger.assign(starts);
        self.trace.push(format!("p{i} assigned {partitions:?}"));
    }

    // --- the group ---

    fn alive(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| self.procs[i].alive)
            .collect()
    }

    /// An eager rebalance: everyone releases everything, then the live members split the partitions.
    fn eager_rebalance(&mut self) {
        for i in self.alive() {
            let mine: Vec<i32> = self.procs[i].consumer.positions.keys().copied().collect();
            self.revoke(i, &mine);
        }
        self.untold.clear();
        self.owner.clear();
        let alive = self.alive();
        if alive.is_empty() {
            return;
        }
        for p in 0..self.logs.len() as i32 {
            let who = alive[self.rng.below(alive.len() as u64) as usize];
            self.owner.insert(p, who);
        }
        for &i in &alive {
            let mine: Vec<i32> = self
                .owner
                .iter()
                .filter(|(_, &o)| o == i)
                .map(|(&p, _)| p)
                .collect();
            if !mine.is_empty() {
                self.assign(i, &mine);
            }
        }
    }

    /// A cooperative move of one partition, or a zombie: the old owner is told later.
    fn move_partition(&mut self, zombie: bool) {
        let alive = self.alive();
        if alive.len() < 2 || self.owner.is_empty() {
            return;
        }
        let k = self.rng.below(self.owner.len() as u64) as usize;
        let (&p, &from) = self.owner.iter().nth(k).expect("k < len");
        let Some(&to) = alive.iter().find(|&&i| i != from) else {
            return;
        };
        if zombie || !self.procs[from].alive {
            if self.procs[from].alive {
                self.untold.push((from, p));
            }
        } else {
            self.revoke(from, &[p]);
        }
        self.owner.insert(p, to);
        self.untold.retain(|&(i, q)| !(i == to && q == p));
        self.assign(to, &[p]);
    }

    /// SIGTERM: the consume loop's final commit, then the consumer closes (its revocation
    /// commits nothing more) and the process leaves the group.
    fn stop(&mut self, i: usize) {
        self.settle(i);
        if self.procs[i].ledger.rewind_due() {
            self.rewind(i);
        }
        self.wait_in_flight(i);
        self.commit(i);
        self.wait_in_flight(i);
        let mine: Vec<i32> = self.procs[i].consumer.positions.keys().copied().collect();
        self.release(i, &mine, false);
        self.trace.push(format!("p{i} stopped"));
        self.kill(i);
    }

    fn kill(&mut self, i: usize) {
        self.procs[i] = Process::default();
        self.untold.retain(|&(j, _)| j != i);
        self.owner.retain(|_, o| *o != i);
        self.trace.push(format!("p{i} killed"));
    }

    fn start(&mut self, i: usize) {
        self.procs[i].alive = true;
        self.trace.push(format!("p{i} started"));
        if self.cooperative && !self.owner.is_empty() {
            // Orphaned partitions go to the newcomer; the others stay.
            let orphans: Vec<i32> = (0..self.logs.len() as i32)
                .filter(|p| !self.owner.contains_key(p))
                .collect();
            for &p in &orphans {
                self.owner.insert(p, i);
            }
            if !orphans.is_empty() {
                self.assign(i, &orphans);
            }
        } else {
            self.eager_rebalance();
        }
    }

    /// Checks the invariant after a step. Synchronized: each row once, and the rows of a
    /// partition are exactly its offsets below the stored one. Guaranteed: nothing below
    /// Kafka's committed offset is missing.
    fn check(&self, seed: u64) {
        let fail = |what: String| {
            panic!(
                "seed {seed} ({}): {what}\nlogs: {:?}\nstored: {:?}, kafka: {:?}\ntrace:\n  {}",
                if self.table.unfenced {
                    "guaranteed"
                } else {
                    "synchronized"
                },
                self.logs,
                self.table.stored,
                self.table.kafka,
                self.trace.join("\n  ")
            )
        };
        for (p, log) in self.logs.iter().enumerate() {
            let have: BTreeSet<i64> = self
                .table
                .rows
                .keys()
                .filter(|(q, _)| *q == p as i32)
                .map(|&(_, o)| o)
                .collect();
            if self.table.unfenced {
                let committed = self.table.kafka.get(&(p as i32)).copied().unwrap_or(0);
                let lost: Vec<_> = log
                    .iter()
                    .filter(|&&o| o < committed && !have.contains(&o))
                    .collect();
                if !lost.is_empty() {
                    fail(format!(
                        "partition {p} committed at {committed} in Kafka: lost {lost:?}"
                    ));
                }
                continue;
            }
            for (&(q, o), &n) in &self.table.rows {
                if q == p as i32 && n > 1 {
                    fail(format!("offset {o} of partition {p} loaded {n} times"));
                }
            }
            let stored = self.table.stored.get(&(p as i32)).copied().unwrap_or(0);
            let want: BTreeSet<i64> = log.iter().copied().filter(|&o| o < stored).collect();
            if want != have {
                let lost: Vec<_> = want.difference(&have).collect();
                let extra: Vec<_> = have.difference(&want).collect();
                fail(format!("partition {p} stored at {stored}: lost {lost:?}, beyond the stored offset {extra:?}"));
            }
        }
    }

    /// True when every produced offset is loaded (and, synchronized, stored).
    fn caught_up(&self) -> bool {
        self.logs.iter().enumerate().all(|(p, log)| {
            let p = p as i32;
            log.last().is_none_or(|&last| {
                if self.table.unfenced {
                    log.iter().all(|&o| self.table.rows.contains_key(&(p, o)))
                } else {
                    self.table.stored.get(&p).is_some_and(|&s| s > last)
                }
            })
        })
    }

    fn random_step(&mut self) {
        let i = self.rng.below(self.procs.len() as u64) as usize;
        if !self.procs[i].alive {
            if self.rng.chance(30) {
                self.start(i);
            }
            return;
        }
        match self.rng.below(100) {
            0..=9 => self.produce(),
            10..=39 => {
                self.settle(i);
                if self.procs[i].ledger.rewind_due() {
                    self.rewind(i);
                }
                self.poll(i);
            }
            40..=54 => self.send(i),
            55..=64 => {
                self.settle(i);
                if self.procs[i].ledger.in_flight() {
                    self.wait_in_flight(i);
                }
                self.commit(i);
            }
            65..=84 => {
                let lose = self.rng.chance(10);
                self.writer_step(i, lose);
            }
            85..=88 => {
                if self.cooperative {
                    self.move_partition(false);
                } else {
                    self.eager_rebalance();
                }
            }
            89..=91 => self.move_partition(true),
            92..=94 => {
                if let Some(k) = (!self.untold.is_empty())
                    .then(|| self.rng.below(self.untold.len() as u64) as usize)
                {
                    let (who, p) = self.untold.remove(k);
                    self.revoke(who, &[p]);
                }
            }
            95 => self.kill(i),
            96 => self.stop(i),
            _ => {
                let lost = self.rng.chance(50);
                self.trace
                    .push(format!("p{i} flush outcome unknown={lost}"));
                self.writer_step(i, lost);
            }
        }
    }

    /// Stops disturbing the sink and lets it finish: everyone alive, every zombie told, one
    /// owner per partition, then consume and commit until the table holds every offset.
    fn quiesce(&mut self, seed: u64) {
        for i in 0..self.procs.len() {
            if !self.procs[i].alive {
                self.start(i);
            }
        }
        for (who, p) in std::mem::take(&mut self.untold) {
            self.revoke(who, &[p]);
        }
        self.eager_rebalance();
        for _ in 0..2000 {
            for i in self.alive() {
                self.settle(i);
                if self.procs[i].ledger.rewind_due() {
                    self.rewind(i);
                }
                for _ in 0..4 {
                    self.poll(i);
                }
                self.send(i);
                self.wait_in_flight(i);
                self.commit(i);
                self.wait_in_flight(i);
                while !self.procs[i].writer.queue.is_empty() {
                    self.writer_step(i, false);
                }
                self.settle(i);
                self.check(seed);
            }
            let done = self.caught_up();
            if done {
                return;
            }
        }
        self.check(seed);
        panic!(
            "seed {seed}: the sink did not catch up: stored {:?}, logs {:?}\ntrace:\n  {}",
            self.table.stored,
            self.logs,
            self.trace.join("\n  ")
        );
    }
}

fn run(seed: u64, synchronized: bool) {
    let mut world = World::new(seed, synchronized);
    world.start(0);
    let steps = 50 + world.rng.below(400);
    for _ in 0..steps {
        world.random_step();
        world.check(seed);
    }
    world.quiesce(seed);
}

fn sequences(synchronized: bool) {
    if let Ok(seed) = std::env::var("PGSINK_MODEL_SEED") {
        run(
            seed.parse().expect("PGSINK_MODEL_SEED is a number"),
            synchronized,
        );
        return;
    }
    let sequences: u64 = std::env::var("PGSINK_MODEL_SEQUENCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    for seed in 0..sequences {
        run(seed, synchronized);
    }
}

#[test]
fn synchronized_delivery_holds_under_random_interleavings() {
    sequences(true);
}

#[test]
fn guaranteed_delivery_holds_under_random_interleavings() {
    sequences(false);
}
