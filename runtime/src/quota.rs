//! A quota with a total and a share per key, held by RAII permits: request bodies in memory per
//! connection, scrypt verifications waiting per token, webhook attempts per endpoint. A permit
//! gives back what it holds when dropped, however its holder ends (an error, a cancelled
//! request, a panic), so nothing leaks.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// `total` units at most, and at most `per_key` for one key.
#[derive(Debug)]
pub struct KeyedQuota<K> {
    total: usize,
    per_key: usize,
    used: Mutex<Used<K>>,
}

#[derive(Debug)]
struct Used<K> {
    total: usize,
    by_key: HashMap<K, usize>,
}

impl<K: Hash + Eq + Clone> KeyedQuota<K> {
    pub fn new(total: usize, per_key: usize) -> Arc<Self> {
        Arc::new(KeyedQuota {
            total,
            per_key,
            used: Mutex::new(Used {
                total: 0,
                by_key: HashMap::new(),
            }),
        })
    }

    /// A permit for `key` that holds nothing yet ([`Permit::grow`] takes units).
    pub fn permit(self: &Arc<Self>, key: K) -> Permit<K> {
        Permit {
            quota: self.clone(),
            key,
            amount: 0,
        }
    }

    /// A permit holding `amount` for `key`, or `None` when the quota cannot give it.
    pub fn try_take(self: &Arc<Self>, key: K, amount: usize) -> Option<Permit<K>> {
        let mut permit = self.permit(key);
        permit.grow(amount).then_some(permit)
    }

    /// Units held now, in all.
    pub fn in_use(&self) -> usize {
        self.lock().total
    }

    /// What each key holding units holds.
    pub fn holders(&self) -> Vec<(K, usize)> {
        self.lock()
            .by_key
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Used<K>> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, key: &K, amount: usize) -> bool {
        let mut used = self.lock();
        let mine = used.by_key.get(key).copied().unwrap_or(0);
        if used.total.saturating_add(amount) > self.total
            || mine.saturating_add(amount) > self.per_key
        {
            return false;
        }
        used.total += amount;
        used.by_key.insert(key.clone(), mine + amount);
        true
    }

    fn give_back(&self, key: &K, amount: usize) {
        if amount == 0 {
            return;
        }
        let mut used = self.lock();
        used.total = used.total.saturating_sub(amount);
        if let Some(mine) = used.by_key.get_mut(key) {
            *mine = mine.saturating_sub(amount);
            if *mine == 0 {
                used.by_key.remove(key);
            }
        }
    }
}

/// Units one holder has of a [`KeyedQuota`]; given back when dropped.
#[derive(Debug)]
pub struct Permit<K: Hash + Eq + Clone> {
    quota: Arc<KeyedQuota<K>>,
    key: K,
    amount: usize,
}

impl<K: Hash + Eq + Clone> Permit<K> {
    /// Takes `amount` more; `false` (and nothing taken) when the quota cannot give it.
    pub fn grow(&mut self, amount: usize) -> bool {
        let taken = self.quota.take(&self.key, amount);
        if taken {
            self.amount += amount;
        }
        taken
    }

    pub fn amount(&self) -> usize {
        self.amount
    }
}

impl<K: Hash + Eq + Clone> Drop for Permit<K> {
    fn drop(&mut self) {
        self.quota.give_back(&self.key, self.amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_share_and_everyone_the_total() {
        let quota = KeyedQuota::new(10, 4);
        let a = quota.try_take("a", 4).expect("a's share");
        assert!(quota.try_take("a", 1).is_none(), "a is at its share");
        let b = quota.try_take("b", 4).expect("b's share");
        assert!(quota.try_take("c", 3).is_none(), "the total is 10");
        let c = quota.try_take("c", 2).expect("what is left");
        assert_eq!(quota.in_use(), 10);
        drop((a, b, c));
        assert_eq!(quota.in_use(), 0);
        assert!(
            quota.holders().is_empty(),
            "keys holding nothing are forgotten"
        );
    }

    #[test]
    fn a_permit_grows_step_by_step_and_gives_everything_back_once() {
        let quota = KeyedQuota::new(100, 50);
        let mut p = quota.permit(1u8);
        assert!(p.grow(30));
        assert!(!p.grow(30), "past the share: nothing taken");
        assert!(p.grow(20));
        assert_eq!((p.amount(), quota.in_use()), (50, 50));
        assert_eq!(quota.holders(), [(1, 50)]);
        drop(p);
        assert_eq!(quota.in_use(), 0);
    }

    #[test]
    fn a_panicking_holder_gives_its_units_back() {
        let quota = KeyedQuota::new(2, 2);
        let held = quota.try_take("endpoint", 1).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = held;
            panic!("an attempt panicked");
        }));
        assert!(panicked.is_err());
        assert_eq!(quota.in_use(), 0);
    }
}
