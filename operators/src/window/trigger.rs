//! Triggers: when a window emits a pane.
//!
//! A [`Trigger`] is a tree, as in Beam. Each window owns the state of every node of its
//! trigger (counts, processing-time deadlines, whether a node finished). The window
//! operator asks the tree three things: an element arrived ([`TriggerProgram::on_element`]),
//! should the window fire now ([`TriggerProgram::should_fire`]), and it fired
//! ([`TriggerProgram::on_fire`]). When the root finishes, the window closes: its last pane
//! is marked last and later elements for it are dropped (and counted).
//!
//! Semantics follow Beam's trigger state machines:
//! - [`Trigger::AfterWatermark`] fires once when the watermark passes the end of the
//!   window (the on-time pane). Its optional early trigger fires repeatedly before that,
//!   its optional late trigger repeatedly after; without a late trigger it finishes at the
//!   on-time firing.
//! - [`Trigger::AfterCount`], [`Trigger::AfterProcessingTime`] and
//!   [`Trigger::Punctuation`] fire once; wrap them in [`Trigger::Repeatedly`] to fire again.
//! - [`Trigger::AfterAll`] fires once when every sub-trigger is ready (or finished),
//!   [`Trigger::AfterFirst`] once when any is; [`Trigger::AfterEach`] runs its
//!   sub-triggers in sequence and finishes after the last; [`Trigger::OrFinally`] fires
//!   with its main trigger until its `until` trigger fires, which finishes it.
//! - When windows merge, their trigger states merge: counts add up, the earliest
//!   processing-time deadline wins, and a node is finished if it was in any merged window.

use rill_runtime::Timestamp;

/// When a processing-time trigger fires, counted from the first element of a pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingDelay {
    /// This many milliseconds after the pane's first element arrived.
    Delay(i64),
    /// At the first multiple of `period` (shifted by `offset`) at or after the pane's first
    /// element arrived (Beam's `alignedTo`).
    Aligned {
        /// The period in milliseconds.
        period: i64,
        /// The offset of the grid in milliseconds.
        offset: i64,
    },
}

impl ProcessingDelay {
    /// The deadline for a pane whose first element arrived at `now`.
    pub fn deadline(self, now: Timestamp) -> Timestamp {
        match self {
            ProcessingDelay::Delay(d) => now.saturating_add(d),
            ProcessingDelay::Aligned { period, offset } => {
                // In i128: `now` may be the clock's minimum (no processing time yet).
                let since = (i128::from(now) - i128::from(offset)).rem_euclid(i128::from(period));
                if since == 0 {
                    now
                } else {
                    now.saturating_add(period - since as i64)
                }
            }
        }
    }
}

/// A trigger: when a window emits a pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Fires when the watermark passes the end of the window, with optional early and
    /// late firings (each repeated).
    AfterWatermark {
        /// Fires repeatedly before the watermark passes the end of the window.
        early: Option<Box<Trigger>>,
        /// Fires repeatedly after the on-time pane, until the window is garbage-collected.
        late: Option<Box<Trigger>>,
    },
    /// Fires once the pane holds this many elements.
    AfterCount(u64),
    /// Fires once processing time reaches a deadline set by the pane's first element.
    AfterProcessingTime(ProcessingDelay),
    /// Fires once an element flagged as punctuation arrived.
    Punctuation,
    /// Fires whenever its sub-trigger does; never finishes.
    Repeatedly(Box<Trigger>),
    /// Fires once every sub-trigger is ready (AND).
    AfterAll(Vec<Trigger>),
    /// Fires once any sub-trigger is ready (OR).
    AfterFirst(Vec<Trigger>),
    /// Runs its sub-triggers one after another.
    AfterEach(Vec<Trigger>),
    /// Fires as the first trigger does until the second fires, then finishes.
    OrFinally(Box<Trigger>, Box<Trigger>),
}

impl Trigger {
    /// The on-time firing only (Beam's `AfterWatermark.pastEndOfWindow()`).
    pub fn after_watermark() -> Trigger {
        Trigger::AfterWatermark {
            early: None,
            late: None,
        }
    }

    /// `AfterWatermark` with early and/or late firings.
    pub fn after_watermark_with(early: Option<Trigger>, late: Option<Trigger>) -> Trigger {
        Trigger::AfterWatermark {
            early: early.map(Box::new),
            late: late.map(Box::new),
        }
    }

    /// Repeats `self` forever.
    pub fn repeatedly(self) -> Trigger {
        Trigger::Repeatedly(Box::new(self))
    }

    /// Fires as `self` until `until` fires.
    pub fn or_finally(self, until: Trigger) -> Trigger {
        Trigger::OrFinally(Box::new(self), Box::new(until))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Watermark {
        early: Option<usize>,
        late: Option<usize>,
    },
    Count(u64),
    Processing(ProcessingDelay),
    Punctuation,
    Repeatedly(usize),
    All,
    First,
    Each,
    OrFinally(usize, usize),
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    children: Vec<usize>,
    /// One past the last node of this node's subtree (nodes are numbered in preorder).
    subtree_end: usize,
}

/// The state of one trigger node in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeState {
    finished: bool,
    /// AfterWatermark: the on-time pane fired. Punctuation: a punctuation arrived.
    flag: bool,
    count: u64,
    /// Processing-time deadline; `Timestamp::MAX` when none is set.
    deadline: Timestamp,
}

impl NodeState {
    /// The state as plain parts, for checkpoints.
    pub(crate) fn to_parts(self) -> (bool, bool, u64, Timestamp) {
        (self.finished, self.flag, self.count, self.deadline)
    }

    /// The state from [`NodeState::to_parts`].
    pub(crate) fn from_parts(parts: (bool, bool, u64, Timestamp)) -> Self {
        NodeState {
            finished: parts.0,
            flag: parts.1,
            count: parts.2,
            deadline: parts.3,
        }
    }

    const FRESH: NodeState = NodeState {
        finished: false,
        flag: false,
        count: 0,
        deadline: Timestamp::MAX,
    };
}

/// What a trigger may look at when it decides.
#[derive(Debug, Clone, Copy)]
pub struct TriggerContext {
    /// The watermark (in the window's time domain) has passed the end of the window.
    pub past_end: bool,
    /// Current processing time.
    pub now: Timestamp,
}

/// A trigger compiled into a flat tree, shared by every window of an operator.
#[derive(Debug, Clone)]
pub struct TriggerProgram {
    nodes: Vec<Node>,
}

impl TriggerProgram {
    /// Compiles `trigger`.
    pub fn new(trigger: &Trigger) -> Self {
        let mut p = TriggerProgram { nodes: Vec::new() };
        p.compile(trigger);
        p
    }

    fn compile(&mut self, t: &Trigger) -> usize {
        let id = self.nodes.len();
        self.nodes.push(Node {
            kind: Kind::All,
            children: Vec::new(),
            subtree_end: 0,
        });
        let mut children = Vec::new();
        let kind = match t {
            Trigger::AfterWatermark { early, late } => {
                let early = early.as_deref().map(|e| self.compile(e));
                let late = late.as_deref().map(|l| self.compile(l));
                children.extend(early);
                children.extend(late);
                Kind::Watermark { early, late }
            }
            Trigger::AfterCount(n) => Kind::Count(*n),
            Trigger::AfterProcessingTime(d) => Kind::Processing(*d),
            Trigger::Punctuation => Kind::Punctuation,
            Trigger::Repeatedly(t) => {
                let c = self.compile(t);
                children.push(c);
                Kind::Repeatedly(c)
            }
            Trigger::AfterAll(ts) | Trigger::AfterFirst(ts) | Trigger::AfterEach(ts) => {
                children.extend(ts.iter().map(|t| self.compile(t)));
                match t {
                    Trigger::AfterAll(_) => Kind::All,
                    Trigger::AfterFirst(_) => Kind::First,
                    _ => Kind::Each,
                }
            }
            Trigger::OrFinally(main, until) => {
                let m = self.compile(main);
                let u = self.compile(until);
                children.extend([m, u]);
                Kind::OrFinally(m, u)
            }
        };
        let end = self.nodes.len();
        self.nodes[id] = Node {
            kind,
            children,
            subtree_end: end,
        };
        id
    }

    /// True if no node looks at elements (no count, processing-time delay or
    /// punctuation): an element then changes no trigger state.
    pub fn ignores_elements(&self) -> bool {
        self.nodes.iter().all(|n| {
            !matches!(
                n.kind,
                Kind::Count(_) | Kind::Processing(_) | Kind::Punctuation
            )
        })
    }

    /// True if the trigger ignores elements and is not ready before the end of a window:
    /// then nothing fires before the end, and an element changes nothing.
    pub fn waits_for_end(&self) -> bool {
        let before_end = TriggerContext {
            past_end: false,
            now: Timestamp::MIN,
        };
        self.ignores_elements() && !self.should_fire(&self.fresh(), before_end)
    }

    /// True if the root is a watermark trigger without early firings. Then, before a
    /// window's end, an element changes no trigger state and the trigger is not ready:
    /// the root's flag is set only by the firing at or after the end (and a merge into a
    /// window before its end clears it), so an element reaches no sub-trigger and the
    /// root waits for the end.
    pub fn quiet_before_end(&self) -> bool {
        matches!(self.nodes[0].kind, Kind::Watermark { early: None, .. })
    }

    /// Fresh state for a new window.
    pub fn fresh(&self) -> Vec<NodeState> {
        vec![NodeState::FRESH; self.nodes.len()]
    }

    /// True once the root finished: the window is closed.
    pub fn is_finished(&self, s: &[NodeState]) -> bool {
        s[0].finished
    }

    /// An element arrived; `deadlines` receives every processing-time deadline it set.
    pub fn on_element(
        &self,
        s: &mut [NodeState],
        cx: TriggerContext,
        punctuation: bool,
        deadlines: &mut Vec<Timestamp>,
    ) {
        self.element(0, s, cx, punctuation, deadlines);
    }

    fn element(
        &self,
        i: usize,
        s: &mut [NodeState],
        cx: TriggerContext,
        punct: bool,
        deadlines: &mut Vec<Timestamp>,
    ) {
        if s[i].finished {
            return;
        }
        match self.nodes[i].kind {
            Kind::Watermark { early, late } => {
                let sub = if s[i].flag { late } else { early };
                if let Some(c) = sub {
                    self.element(c, s, cx, punct, deadlines);
                }
            }
            Kind::Count(_) => s[i].count += 1,
            Kind::Processing(delay) => {
                if s[i].deadline == Timestamp::MAX {
                    s[i].deadline = delay.deadline(cx.now);
                    deadlines.push(s[i].deadline);
                }
            }
            Kind::Punctuation => s[i].flag |= punct,
            Kind::Each => {
                if let Some(&c) = self.nodes[i].children.iter().find(|&&c| !s[c].finished) {
                    self.element(c, s, cx, punct, deadlines);
                }
            }
            Kind::Repeatedly(_) | Kind::All | Kind::First | Kind::OrFinally(..) => {
                for &c in &self.nodes[i].children {
                    self.element(c, s, cx, punct, deadlines);
                }
            }
        }
    }

    /// Whether the window should fire now.
    pub fn should_fire(&self, s: &[NodeState], cx: TriggerContext) -> bool {
        self.ready(0, s, cx)
    }

    fn ready(&self, i: usize, s: &[NodeState], cx: TriggerContext) -> bool {
        if s[i].finished {
            return false;
        }
        let children = &self.nodes[i].children;
        match self.nodes[i].kind {
            Kind::Watermark { early, late } => {
                if s[i].flag {
                    late.is_some_and(|c| self.ready(c, s, cx))
                } else {
                    cx.past_end || early.is_some_and(|c| self.ready(c, s, cx))
                }
            }
            Kind::Count(n) => s[i].count >= n,
            Kind::Processing(_) => s[i].deadline <= cx.now,
            Kind::Punctuation => s[i].flag,
            Kind::Repeatedly(c) => self.ready(c, s, cx),
            Kind::All => children
                .iter()
                .all(|&c| s[c].finished || self.ready(c, s, cx)),
            Kind::First => children.iter().any(|&c| self.ready(c, s, cx)),
            Kind::Each => children
                .iter()
                .find(|&&c| !s[c].finished)
                .is_some_and(|&c| self.ready(c, s, cx)),
            Kind::OrFinally(m, u) => self.ready(m, s, cx) || self.ready(u, s, cx),
        }
    }

    /// The window fired (call only after [`TriggerProgram::should_fire`] said so).
    pub fn on_fire(&self, s: &mut [NodeState], cx: TriggerContext) {
        self.fire(0, s, cx);
    }

    fn fire(&self, i: usize, s: &mut [NodeState], cx: TriggerContext) {
        match self.nodes[i].kind {
            Kind::Watermark { early, late } => {
                if s[i].flag {
                    if let Some(c) = late {
                        self.fire_and_reset(c, s, cx);
                    }
                } else if cx.past_end {
                    s[i].flag = true;
                    match late {
                        None => s[i].finished = true,
                        Some(c) => self.clear(c, s),
                    }
                } else if let Some(c) = early {
                    self.fire_and_reset(c, s, cx);
                }
            }
            Kind::Count(_) | Kind::Processing(_) | Kind::Punctuation => s[i].finished = true,
            Kind::Repeatedly(c) => self.fire_and_reset(c, s, cx),
            Kind::All => {
                for j in 0..self.nodes[i].children.len() {
                    let c = self.nodes[i].children[j];
                    if !s[c].finished {
                        self.fire(c, s, cx);
                    }
                }
                s[i].finished = true;
            }
            Kind::First => {
                for j in 0..self.nodes[i].children.len() {
                    let c = self.nodes[i].children[j];
                    if self.ready(c, s, cx) {
                        self.fire(c, s, cx);
                    } else {
                        self.clear(c, s);
                    }
                }
                s[i].finished = true;
            }
            Kind::Each => {
                let children = &self.nodes[i].children;
                if let Some(&c) = children.iter().find(|&&c| !s[c].finished) {
                    self.fire(c, s, cx);
                }
                s[i].finished = children.iter().all(|&c| s[c].finished);
            }
            Kind::OrFinally(m, u) => {
                if self.ready(u, s, cx) {
                    self.fire(u, s, cx);
                    self.clear(m, s);
                } else {
                    self.fire(m, s, cx);
                }
                s[i].finished = s[m].finished || s[u].finished;
            }
        }
    }

    fn fire_and_reset(&self, c: usize, s: &mut [NodeState], cx: TriggerContext) {
        self.fire(c, s, cx);
        if s[c].finished {
            self.clear(c, s);
        }
    }

    /// Resets node `i` and its subtree.
    fn clear(&self, i: usize, s: &mut [NodeState]) {
        s[i..self.nodes[i].subtree_end].fill(NodeState::FRESH);
    }

    /// The state of a window merged from windows with states `merged` (see the module
    /// docs); `cx` describes the merged window.
    pub fn merge<'a>(
        &self,
        merged: impl IntoIterator<Item = &'a [NodeState]>,
        cx: TriggerContext,
    ) -> Vec<NodeState> {
        let mut out = Vec::new();
        self.merge_into(&mut out, merged, cx);
        out
    }

    /// [`TriggerProgram::merge`] into `out` (its contents replaced, its memory reused).
    pub fn merge_into<'a>(
        &self,
        out: &mut Vec<NodeState>,
        merged: impl IntoIterator<Item = &'a [NodeState]>,
        cx: TriggerContext,
    ) {
        out.clear();
        out.resize(self.nodes.len(), NodeState::FRESH);
        for s in merged {
            for (o, m) in out.iter_mut().zip(s) {
                o.finished |= m.finished;
                o.flag |= m.flag;
                o.count += m.count;
                o.deadline = o.deadline.min(m.deadline);
            }
        }
        self.merge_one(out, cx);
    }

    /// [`TriggerProgram::merge`] of one window's state, in place: what a session that a
    /// record extends keeps. (A merged window that has not reached its end has not had its
    /// on-time pane.)
    pub fn merge_one(&self, s: &mut [NodeState], cx: TriggerContext) {
        if cx.past_end {
            return;
        }
        for (node, state) in self.nodes.iter().zip(s) {
            if let Kind::Watermark { .. } = node.kind {
                state.flag = false;
            }
        }
    }

    /// Every processing-time deadline set in `s` (to re-register after a merge).
    pub fn deadlines<'a>(&self, s: &'a [NodeState]) -> impl Iterator<Item = Timestamp> + 'a {
        s.iter()
            .filter(|n| n.deadline != Timestamp::MAX)
            .map(|n| n.deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(past_end: bool, now: Timestamp) -> TriggerContext {
        TriggerContext { past_end, now }
    }

    /// Feeds `n` elements and returns after which ones the trigger fired.
    fn firings(t: &Trigger, n: usize) -> Vec<usize> {
        let p = TriggerProgram::new(t);
        let mut s = p.fresh();
        let mut fired = Vec::new();
        let mut d = Vec::new();
        for i in 0..n {
            p.on_element(&mut s, cx(false, 0), false, &mut d);
            if p.should_fire(&s, cx(false, 0)) {
                p.on_fire(&mut s, cx(false, 0));
                fired.push(i + 1);
            }
        }
        fired
    }

    #[test]
    fn count_fires_once_repeatedly_fires_again() {
        assert_eq!(firings(&Trigger::AfterCount(2), 7), vec![2]);
        assert_eq!(
            firings(&Trigger::AfterCount(2).repeatedly(), 7),
            vec![2, 4, 6]
        );
    }

    #[test]
    fn composites() {
        let c = Trigger::AfterCount;
        assert_eq!(
            firings(&Trigger::AfterAll(vec![c(2), c(3)]).repeatedly(), 9),
            vec![3, 6, 9]
        );
        // AfterFirst resets the sub-trigger that did not fire.
        assert_eq!(
            firings(&Trigger::AfterFirst(vec![c(2), c(3)]).repeatedly(), 6),
            vec![2, 4, 6]
        );
        assert_eq!(
            firings(&Trigger::AfterEach(vec![c(1), c(3)]), 10),
            vec![1, 4]
        );
        assert_eq!(
            firings(&c(1).repeatedly().or_finally(c(3)), 10),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn watermark_with_early_and_late() {
        let t = Trigger::after_watermark_with(Some(Trigger::AfterCount(2)), None);
        let p = TriggerProgram::new(&t);
        let mut s = p.fresh();
        let mut d = Vec::new();
        for _ in 0..2 {
            p.on_element(&mut s, cx(false, 0), false, &mut d);
        }
        assert!(p.should_fire(&s, cx(false, 0)));
        p.on_fire(&mut s, cx(false, 0));
        p.on_element(&mut s, cx(false, 0), false, &mut d);
        assert!(!p.should_fire(&s, cx(false, 0)));
        // The watermark passes the end: the on-time pane, and without late firings done.
        assert!(p.should_fire(&s, cx(true, 0)));
        p.on_fire(&mut s, cx(true, 0));
        assert!(p.is_finished(&s));
    }

    #[test]
    fn punctuation_fires_on_the_flagged_record() {
        let p = TriggerProgram::new(&Trigger::Punctuation.repeatedly());
        let mut s = p.fresh();
        let mut d = Vec::new();
        let mut fired = Vec::new();
        for (i, punct) in [false, false, true, false, true, true]
            .into_iter()
            .enumerate()
        {
            p.on_element(&mut s, cx(false, 0), punct, &mut d);
            if p.should_fire(&s, cx(false, 0)) {
                p.on_fire(&mut s, cx(false, 0));
                fired.push(i);
            }
        }
        assert_eq!(fired, vec![2, 4, 5]);
        // Without repeat it fires once and finishes the window.
        let once = TriggerProgram::new(&Trigger::Punctuation);
        let mut s = once.fresh();
        once.on_element(&mut s, cx(false, 0), true, &mut d);
        once.on_fire(&mut s, cx(false, 0));
        assert!(once.is_finished(&s));
    }

    /// Merging one window's state in place equals merging it alone into a new state,
    /// before and after its end, for trigger states reached by elements and firings.
    #[test]
    fn merging_one_state_in_place_equals_merging_it_alone() {
        let c = Trigger::AfterCount;
        let triggers = [
            Trigger::after_watermark(),
            Trigger::after_watermark_with(Some(c(2)), Some(c(1))),
            Trigger::after_watermark_with(
                Some(Trigger::AfterProcessingTime(ProcessingDelay::Delay(5))),
                None,
            )
            .repeatedly(),
            Trigger::AfterAll(vec![c(2), c(3)]).repeatedly(),
        ];
        let mut d = Vec::new();
        for t in &triggers {
            let p = TriggerProgram::new(t);
            let mut s = p.fresh();
            for step in 0..8 {
                let at = cx(step >= 4, step);
                p.on_element(&mut s, at, false, &mut d);
                if p.should_fire(&s, at) {
                    p.on_fire(&mut s, at);
                }
                for past_end in [false, true] {
                    let merged = cx(past_end, step);
                    let mut one = s.clone();
                    p.merge_one(&mut one, merged);
                    assert_eq!(one, p.merge([&s[..]], merged), "{t:?} step {step}");
                }
            }
        }
    }

    /// A quiet program's state before the end: elements change nothing and it is not
    /// ready, from a fresh state and from merges of states that fired after their end.
    #[test]
    fn a_quiet_program_ignores_elements_before_the_end() {
        let c = Trigger::AfterCount;
        let triggers = [
            Trigger::after_watermark(),
            Trigger::after_watermark_with(None, Some(c(2))),
            Trigger::after_watermark_with(None, Some(c(1).repeatedly())),
            Trigger::after_watermark_with(Some(c(1)), None),
            Trigger::AfterCount(1),
        ];
        let quiet: Vec<bool> = triggers
            .iter()
            .map(|t| TriggerProgram::new(t).quiet_before_end())
            .collect();
        assert_eq!(quiet, vec![true, true, true, false, false]);
        let mut d = Vec::new();
        for t in &triggers[..3] {
            let p = TriggerProgram::new(t);
            let (fresh, mut fired) = (p.fresh(), p.fresh());
            p.on_element(&mut fired, cx(true, 0), false, &mut d);
            p.on_fire(&mut fired, cx(true, 0));
            p.on_element(&mut fired, cx(true, 0), true, &mut d);
            for merged in [&fresh[..], &fired[..]] {
                let mut s = p.merge([merged, &fresh[..]], cx(false, 0));
                let before = s.clone();
                for punct in [false, true] {
                    p.on_element(&mut s, cx(false, 7), punct, &mut d);
                    assert_eq!(s, before, "{t:?}");
                    assert!(!p.should_fire(&s, cx(false, 7)), "{t:?}");
                }
            }
            assert!(d.is_empty());
        }
    }

    #[test]
    fn processing_time_deadlines() {
        let t = Trigger::AfterProcessingTime(ProcessingDelay::Delay(5)).repeatedly();
        let p = TriggerProgram::new(&t);
        let mut s = p.fresh();
        let mut d = Vec::new();
        p.on_element(&mut s, cx(false, 10), false, &mut d);
        p.on_element(&mut s, cx(false, 12), false, &mut d);
        assert_eq!(d, vec![15]);
        assert!(!p.should_fire(&s, cx(false, 14)));
        assert!(p.should_fire(&s, cx(false, 15)));
        p.on_fire(&mut s, cx(false, 15));
        assert!(!p.should_fire(&s, cx(false, 100)));
        let aligned = ProcessingDelay::Aligned {
            period: 10,
            offset: 3,
        };
        assert_eq!(aligned.deadline(13), 13);
        assert_eq!(aligned.deadline(14), 23);
        assert_eq!(aligned.deadline(-8), -7);
    }
}
