//! A user's keyed state handles: [`ValueState`], [`MapState`] and [`ListState`], tables the
//! runtime checkpoints and restores for the operator (Flink's `ValueState`, `MapState`,
//! `ListState`).

use std::cell::RefCell;
use std::hash::Hash;
use std::rc::Rc;

use super::table::{KeyedState, SharedKeyedState};

/// A value per key, checkpointed by the runtime (from
/// [`ShardContext::value_state`](crate::ShardContext::value_state)).
pub struct ValueState<K, V>(pub(crate) Rc<RefCell<KeyedState<K, V>>>);

/// A map per key, checkpointed by the runtime (from
/// [`ShardContext::map_state`](crate::ShardContext::map_state)). A key's map is kept
/// sorted by user key and is one entry of the incremental changelog (a change to one entry
/// writes the key's whole map).
pub struct MapState<K, UK, UV>(pub(crate) SharedKeyedState<K, Vec<(UK, UV)>>);

/// A list per key, checkpointed by the runtime (from
/// [`ShardContext::list_state`](crate::ShardContext::list_state)).
pub struct ListState<K, V>(pub(crate) Rc<RefCell<KeyedState<K, Vec<V>>>>);

macro_rules! debug_handle {
    ($($t:ident<$($p:ident),*>),*) => {$(
        impl<$($p),*> std::fmt::Debug for $t<$($p),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($t)).field(&self.0.borrow()).finish()
            }
        }
    )*};
}
debug_handle!(ValueState<K, V>, MapState<K, UK, UV>, ListState<K, V>);

impl<K: Clone + Hash + Eq, V: Clone> ValueState<K, V> {
    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.0.borrow().get(key).cloned()
    }
    /// Sets the value of `key`.
    pub fn set(&self, key: K, value: V) {
        self.0.borrow_mut().insert(key, value);
    }
    /// Changes the value of `key` in place (created with `make` if it has none).
    pub fn update<R>(&self, key: K, make: impl FnOnce() -> V, f: impl FnOnce(&mut V) -> R) -> R {
        f(self.0.borrow_mut().get_or_insert_with(key, make))
    }
    /// Drops the value of `key`.
    pub fn clear(&self, key: &K) -> Option<V> {
        self.0.borrow_mut().remove(key)
    }
    /// Calls `f` with every key and its value, in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        self.0.borrow().iter().for_each(|(k, v)| f(k, v));
    }
    /// Number of keys with a value.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }
    /// True if no key has a value.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

impl<K: Clone + Hash + Eq, UK: Ord + Clone, UV: Clone> MapState<K, UK, UV> {
    /// The value under `user_key` in `key`'s map.
    pub fn get(&self, key: &K, user_key: &UK) -> Option<UV> {
        let table = self.0.borrow();
        let map = table.get(key)?;
        let i = map.binary_search_by(|(k, _)| k.cmp(user_key)).ok()?;
        Some(map[i].1.clone())
    }
    /// Puts `value` under `user_key` in `key`'s map, returning the previous value.
    pub fn put(&self, key: K, user_key: UK, value: UV) -> Option<UV> {
        let mut table = self.0.borrow_mut();
        let map = table.get_or_insert_with(key, Vec::new);
        match map.binary_search_by(|(k, _)| k.cmp(&user_key)) {
            Ok(i) => Some(std::mem::replace(&mut map[i].1, value)),
            Err(i) => {
                map.insert(i, (user_key, value));
                None
            }
        }
    }
    /// Removes `user_key` from `key`'s map (and the map once it is empty).
    pub fn remove(&self, key: &K, user_key: &UK) -> Option<UV> {
        let mut table = self.0.borrow_mut();
        let map = table.get_mut(key)?;
        let i = map.binary_search_by(|(k, _)| k.cmp(user_key)).ok()?;
        let (_, old) = map.remove(i);
        if map.is_empty() {
            table.remove(key);
        }
        Some(old)
    }
    /// `key`'s map, in user-key order.
    pub fn entries(&self, key: &K) -> Vec<(UK, UV)> {
        self.0.borrow().get(key).cloned().unwrap_or_default()
    }
    /// Drops `key`'s map.
    pub fn clear(&self, key: &K) {
        self.0.borrow_mut().remove(key);
    }
}

impl<K: Clone + Hash + Eq, V: Clone> ListState<K, V> {
    /// Appends `value` to `key`'s list.
    pub fn add(&self, key: K, value: V) {
        self.0
            .borrow_mut()
            .get_or_insert_with(key, Vec::new)
            .push(value);
    }
    /// `key`'s list, in the order added.
    pub fn get(&self, key: &K) -> Vec<V> {
        self.0.borrow().get(key).cloned().unwrap_or_default()
    }
    /// Replaces `key`'s list (an empty one drops it).
    pub fn set(&self, key: K, values: Vec<V>) {
        let mut table = self.0.borrow_mut();
        if values.is_empty() {
            table.remove(&key);
        } else {
            table.insert(key, values);
        }
    }
    /// Calls `f` with every key and its list, in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(&K, &[V])) {
        self.0.borrow().iter().for_each(|(k, v)| f(k, v));
    }
    /// Drops `key`'s list, returning it.
    pub fn clear(&self, key: &K) -> Vec<V> {
        self.0.borrow_mut().remove(key).unwrap_or_default()
    }
}
