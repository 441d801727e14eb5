//! A budget of body bytes in flight, compressed and decoded, for the whole receiver and for each
//! connection: memory stays bounded however many large bodies arrive at once, and one token
//! holder cannot take the budget every other connection needs. Bytes are reserved as they are
//! read or decoded and given back when the request is done (or dropped, if the client goes).
//! Pure bookkeeping, no I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// One connection may hold at most this fraction of the budget.
const PER_CONNECTION_SHARE: usize = 4;

#[derive(Debug)]
pub struct BodyBudget {
    total: usize,
    per_connection: usize,
    used: Mutex<Used>,
}

#[derive(Debug, Default)]
struct Used {
    total: usize,
    by_connection: HashMap<Uuid, usize>,
}

impl BodyBudget {
    /// `total` bytes in flight at most; a connection at most a quarter of it (and never less
    /// than one body of `max_body` bytes, so a single large request always fits an idle
    /// receiver).
    pub fn new(total: usize, max_body: usize) -> Arc<Self> {
        Arc::new(BodyBudget {
            total,
            per_connection: (total / PER_CONNECTION_SHARE).max(max_body.min(total)),
            used: Mutex::default(),
        })
    }

    /// An empty reservation for `connection`, to grow as its body is read.
    pub fn reservation(self: &Arc<Self>, connection: Uuid) -> Reservation {
        Reservation {
            budget: self.clone(),
            connection,
            bytes: 0,
        }
    }

    /// Bytes reserved now, in all.
    pub fn in_use(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Used> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, connection: Uuid, bytes: usize) -> bool {
        let mut used = self.lock();
        let mine = used.by_connection.get(&connection).copied().unwrap_or(0);
        if used.total + bytes > self.total || mine + bytes > self.per_connection {
            return false;
        }
        used.total += bytes;
        used.by_connection.insert(connection, mine + bytes);
        true
    }

    fn give_back(&self, connection: Uuid, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut used = self.lock();
        used.total = used.total.saturating_sub(bytes);
        if let Some(mine) = used.by_connection.get_mut(&connection) {
            *mine = mine.saturating_sub(bytes);
            if *mine == 0 {
                used.by_connection.remove(&connection);
            }
        }
    }
}

/// Bytes one request holds; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    connection: Uuid,
    bytes: usize,
}

impl Reservation {
    /// Reserves `bytes` more; `false` (and nothing reserved) when the budget is spent.
    pub fn grow(&mut self, bytes: usize) -> bool {
        if self.budget.take(self.connection, bytes) {
            self.bytes += bytes;
            true
        } else {
            false
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.connection, self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = BodyBudget::new(100 * MIB, 10 * MIB);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut first = budget.reservation(a);
        assert!(first.grow(20 * MIB));
        // One connection holds at most a quarter.
        assert!(!first.grow(6 * MIB));
        assert!(first.grow(5 * MIB));
        let mut second = budget.reservation(b);
        assert!(second.grow(25 * MIB));
        assert_eq!(budget.in_use(), 50 * MIB);
        drop(first);
        assert_eq!(budget.in_use(), 25 * MIB);
        let mut third = budget.reservation(a);
        assert!(third.grow(25 * MIB), "given back on drop");
        drop((second, third));
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn the_total_bounds_every_connection_together() {
        let budget = BodyBudget::new(40 * MIB, 10 * MIB);
        let mut held = Vec::new();
        for c in 0..4 {
            let mut r = budget.reservation(Uuid::from_u128(c));
            assert!(r.grow(10 * MIB));
            held.push(r);
        }
        let mut late = budget.reservation(Uuid::from_u128(9));
        assert!(!late.grow(1));
        assert_eq!(late.bytes(), 0);
        held.pop();
        assert!(late.grow(10 * MIB));
    }

    #[test]
    fn one_body_of_the_largest_size_always_fits_an_idle_receiver() {
        let budget = BodyBudget::new(16 * MIB, 10 * MIB);
        let mut r = budget.reservation(Uuid::from_u128(1));
        assert!(r.grow(10 * MIB));
    }
}
