//! The tables a shard's operators registered with the runtime, which snapshots and restores
//! them for the operator.

use std::cell::{Cell, RefCell};
use std::hash::Hash;
use std::rc::Rc;

use super::codec::Registered;
use super::table::{Changes, KeyedState};
use super::timer_queue::TimerQueue;
use super::timers::TimerTable;
use crate::data::StateData;

/// The tables a shard's operators registered, by node (built on the shard while its nodes
/// are built).
pub(crate) struct Registry {
    node: Cell<usize>,
    changes: Changes,
    tables: RefCell<Vec<RegisteredTable>>,
}

/// A registered table: its node, its section name, the table.
pub(crate) struct RegisteredTable {
    pub node: usize,
    pub section: String,
    pub table: Rc<dyn Registered>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("node", &self.node.get())
            .field("tables", &self.tables.borrow().len())
            .finish()
    }
}

impl Registry {
    /// A registry whose tables track changes (the job takes checkpoints) or not.
    pub(crate) fn new(changes: Changes) -> Self {
        Registry {
            node: Cell::new(0),
            changes,
            tables: RefCell::new(Vec::new()),
        }
    }

    /// Whether the tables track their changes.
    pub(crate) fn changes(&self) -> Changes {
        self.changes
    }

    /// The node being built: tables registered from now on are its.
    pub(crate) fn enter(&self, node: usize) {
        self.node.set(node);
    }

    /// The node being built.
    pub(crate) fn node(&self) -> usize {
        self.node.get()
    }

    /// `node`'s tables.
    pub(crate) fn of(&self, node: usize) -> Vec<(String, Rc<dyn Registered>)> {
        self.tables
            .borrow()
            .iter()
            .filter(|t| t.node == node)
            .map(|t| (t.section.clone(), t.table.clone()))
            .collect()
    }

    fn register<T: Registered + 'static>(&self, name: &str, table: T) -> Rc<T> {
        let node = self.node.get();
        let section = format!("state {name}");
        let mut tables = self.tables.borrow_mut();
        assert!(
            !tables
                .iter()
                .any(|t| t.node == node && t.section == section),
            "an operator registered two states named '{name}': give each its own name"
        );
        let table = Rc::new(table);
        tables.push(RegisteredTable {
            node,
            section,
            table: table.clone(),
        });
        table
    }

    pub(crate) fn table<K, V>(&self, name: &str) -> Rc<RefCell<KeyedState<K, V>>>
    where
        K: StateData + Hash + Eq,
        V: StateData,
    {
        self.register(name, RefCell::new(KeyedState::with_changes(self.changes)))
    }

    pub(crate) fn timers<K: StateData + Hash + Eq>(&self, name: &str) -> Rc<TimerTable<K>> {
        self.register(
            name,
            TimerTable {
                times: Rc::new(RefCell::new(KeyedState::with_changes(self.changes))),
                queue: RefCell::new(TimerQueue::new()),
            },
        )
    }
}
