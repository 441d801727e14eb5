//! A budget of body bytes in flight, compressed and decoded, for the whole receiver and for each
//! connection: memory stays bounded however many large bodies arrive at once, and one token
//! holder cannot take the budget every other connection needs. Bytes are reserved as they are
//! read or decoded and given back when the request is done (or dropped, if the client goes).
//! Pure bookkeeping, no I/O.

use std::sync::Arc;

use gf_runtime::quota::{KeyedQuota, Permit};
use uuid::Uuid;

/// One connection may hold at most this fraction of the budget.
const PER_CONNECTION_SHARE: usize = 4;

/// Body bytes in flight, per connection.
pub type BodyBudget = KeyedQuota<Uuid>;
/// Bytes one request holds; given back when dropped.
pub type Reservation = Permit<Uuid>;

/// `total` bytes in flight at most; a connection at most a quarter of it (and never less than
/// one body of `max_body` bytes, so a single large request always fits an idle receiver).
pub fn body_budget(total: usize, max_body: usize) -> Arc<BodyBudget> {
    KeyedQuota::new(
        total,
        (total / PER_CONNECTION_SHARE).max(max_body.min(total)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = body_budget(100 * MIB, 10 * MIB);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut first = budget.permit(a);
        assert!(first.grow(20 * MIB));
        // One connection holds at most a quarter.
        assert!(!first.grow(6 * MIB));
        assert!(first.grow(5 * MIB));
        let mut second = budget.permit(b);
        assert!(second.grow(25 * MIB));
        assert_eq!(budget.in_use(), 50 * MIB);
        drop(first);
        assert_eq!(budget.in_use(), 25 * MIB);
        let mut third = budget.permit(a);
        assert!(third.grow(25 * MIB), "given back on drop");
        drop((second, third));
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn the_total_bounds_every_connection_together() {
        let budget = body_budget(40 * MIB, 10 * MIB);
        let mut held = Vec::new();
        for c in 0..4 {
            let mut r = budget.permit(Uuid::from_u128(c));
            assert!(r.grow(10 * MIB));
            held.push(r);
        }
        let mut late = budget.permit(Uuid::from_u128(9));
        assert!(!late.grow(1));
        assert_eq!(late.amount(), 0);
        held.pop();
        assert!(late.grow(10 * MIB));
    }

    #[test]
    fn one_body_of_the_largest_size_always_fits_an_idle_receiver() {
        let budget = body_budget(16 * MIB, 10 * MIB);
        let mut r = budget.permit(Uuid::from_u128(1));
        assert!(r.grow(10 * MIB));
    }
}
