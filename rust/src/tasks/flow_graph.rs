//! A Flow class's method graph, compiled once: which listeners and routers a
//! completed step (or a router's outcome) can trigger.
//!
//! Upstream's `Flow._find_triggered_methods` answers "which methods fire now"
//! by walking every listener of the flow and re-evaluating its condition on
//! every trigger (the agent executor has 31; a task makes about 40 such walks).
//! The answer only changes for listeners whose condition names the trigger:
//! a condition is a positive formula over "this event was seen", so adding an
//! event it does not name cannot make it true. The graph therefore keeps, per
//! event, the listeners that name it (in definition order, routers and plain
//! listeners apart), plus the listeners satisfied by no event at all (an
//! empty `and_`), which every trigger reaches.
//!
//! What a run has seen stays where upstream keeps it (the flow's
//! `_pending_events` and `_fired_or_listeners`); `satisfied` evaluates a
//! condition against whatever membership test the caller brings.

use std::collections::HashMap;

/// A listener's condition: an event name (a method or a router outcome),
/// or all / any of nested conditions (`and_` / `or_`).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Event(usize),
    All(Vec<Condition>),
    Any(Vec<Condition>),
}

impl Condition {
    pub fn satisfied(&self, seen: &mut impl FnMut(usize) -> bool) -> bool {
        match self {
            Condition::Event(event) => seen(*event),
            Condition::All(branches) => branches.iter().all(|b| b.satisfied(seen)),
            Condition::Any(branches) => branches.iter().any(|b| b.satisfied(seen)),
        }
    }

    fn events(&self, out: &mut Vec<usize>) {
        match self {
            Condition::Event(event) => out.push(*event),
            Condition::All(branches) | Condition::Any(branches) => branches.iter().for_each(|b| b.events(out)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub is_router: bool,
    pub condition: Condition,
    /// An `or_` of several events on a plain listener fires once until
    /// re-armed (upstream's `_fired_or_listeners`); routers always re-fire.
    pub fires_once: bool,
}

/// Event names, numbered in order of first appearance.
#[derive(Debug, Default)]
pub struct Events {
    numbers: HashMap<String, usize>,
    names: Vec<String>,
}

impl Events {
    pub fn number(&mut self, name: &str) -> usize {
        if let Some(&n) = self.numbers.get(name) {
            return n;
        }
        let n = self.names.len();
        self.numbers.insert(name.to_string(), n);
        self.names.push(name.to_string());
        n
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

#[derive(Debug)]
pub struct FlowGraph {
    listeners: Vec<Listener>,
    events: Events,
    /// Per event number, per kind (0: plain listeners, 1: routers): the
    /// listeners a trigger of that event must check, in definition order.
    by_event: Vec<[Vec<usize>; 2]>,
    /// Per kind: what a trigger naming no known event must check.
    unnamed: [Vec<usize>; 2],
}

impl FlowGraph {
    /// `listeners` in definition order, their conditions numbered by `events`.
    pub fn new(listeners: Vec<Listener>, events: Events) -> FlowGraph {
        let always: Vec<usize> = (0..listeners.len()).filter(|&i| listeners[i].condition.satisfied(&mut |_| false)).collect();
        let mut by_event = vec![[Vec::new(), Vec::new()]; events.names.len()];
        let mut named = Vec::new();
        for (i, listener) in listeners.iter().enumerate() {
            named.clear();
            listener.condition.events(&mut named);
            named.sort_unstable();
            named.dedup();
            for &event in &named {
                by_event[event][listener.is_router as usize].push(i);
            }
        }
        let mut unnamed = [Vec::new(), Vec::new()];
        for &i in &always {
            unnamed[listeners[i].is_router as usize].push(i);
        }
        for lists in &mut by_event {
            for (kind, list) in lists.iter_mut().enumerate() {
                list.extend(unnamed[kind].iter().copied());
                list.sort_unstable();
                list.dedup();
            }
        }
        FlowGraph { listeners, events, by_event, unnamed }
    }

    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    pub fn event_names(&self) -> &[String] {
        self.events.names()
    }

    /// The listeners (routers with `routers`, else plain listeners) that a
    /// trigger named `trigger` may fire, in definition order.
    pub fn candidates(&self, trigger: &str, routers: bool) -> &[usize] {
        match self.events.numbers.get(trigger) {
            Some(&event) => &self.by_event[event][routers as usize],
            None => self.unnamed(routers),
        }
    }

    /// What a trigger naming no compiled event may fire: the listeners no event satisfies.
    pub fn unnamed(&self, routers: bool) -> &[usize] {
        &self.unnamed[routers as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    /// One listener's turn on a trigger, as upstream's walk and the binding both take it.
    fn visit(
        graph: &FlowGraph,
        i: usize,
        trigger: usize,
        pending: &mut HashMap<usize, HashSet<usize>>,
        fired: &mut HashSet<usize>,
        out: &mut Vec<usize>,
    ) {
        let l = &graph.listeners[i];
        if l.fires_once && fired.contains(&i) {
            return;
        }
        let seen = pending.entry(i).or_default();
        seen.insert(trigger);
        if l.condition.satisfied(&mut |e| seen.contains(&e)) {
            pending.remove(&i);
            out.push(i);
            if l.fires_once {
                fired.insert(i);
            }
        }
    }

    /// Upstream's algorithm, as written in `Flow._find_triggered_methods`:
    /// every listener of the kind sees every trigger.
    fn upstream(
        graph: &FlowGraph,
        trigger: usize,
        routers: bool,
        pending: &mut HashMap<usize, HashSet<usize>>,
        fired: &mut HashSet<usize>,
    ) -> Vec<usize> {
        let mut out = Vec::new();
        for i in (0..graph.listeners.len()).filter(|&i| graph.listeners[i].is_router == routers) {
            visit(graph, i, trigger, pending, fired, &mut out);
        }
        out
    }

    /// The indexed walk the binding does: only the candidates of the trigger.
    fn indexed(
        graph: &FlowGraph,
        trigger: usize,
        routers: bool,
        pending: &mut HashMap<usize, HashSet<usize>>,
        fired: &mut HashSet<usize>,
    ) -> Vec<usize> {
        let mut out = Vec::new();
        for &i in graph.candidates(&graph.events.names[trigger], routers) {
            visit(graph, i, trigger, pending, fired, &mut out);
        }
        out
    }

    struct Random(u64);

    impl Random {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n.max(1)
        }
    }

    fn condition(rng: &mut Random, events: usize, depth: usize) -> Condition {
        match if depth == 0 { 0 } else { rng.below(4) } {
            0 | 1 => Condition::Event(rng.below(events)),
            kind => {
                let branches = (0..rng.below(4)).map(|_| condition(rng, events, depth - 1)).collect();
                if kind == 2 {
                    Condition::All(branches)
                } else {
                    Condition::Any(branches)
                }
            }
        }
    }

    #[test]
    fn the_index_fires_what_a_walk_of_every_listener_fires() {
        let mut rng = Random(7);
        for _ in 0..300 {
            let n_events = 1 + rng.below(8);
            let mut events = Events::default();
            for e in 0..n_events {
                events.number(&format!("e{e}"));
            }
            let listeners: Vec<Listener> = (0..1 + rng.below(12))
                .map(|i| {
                    let condition = condition(&mut rng, n_events, 3);
                    let is_router = rng.below(3) == 0;
                    let fires_once = !is_router && matches!(&condition, Condition::Any(b) if b.len() > 1);
                    Listener { name: format!("m{i}"), is_router, condition, fires_once }
                })
                .collect();
            let graph = FlowGraph::new(listeners, events);
            let (mut pending_a, mut fired_a) = (HashMap::new(), HashSet::new());
            let (mut pending_b, mut fired_b) = (HashMap::new(), HashSet::new());
            for step in 0..40 {
                let (trigger, routers) = (rng.below(n_events), rng.below(2) == 0);
                if step % 9 == 8 {
                    fired_a.clear(); // re-armed, as upstream does between cycles
                    fired_b.clear();
                }
                let a = upstream(&graph, trigger, routers, &mut pending_a, &mut fired_a);
                let b = indexed(&graph, trigger, routers, &mut pending_b, &mut fired_b);
                assert_eq!(a, b, "{graph:?} trigger e{trigger}");
                assert_eq!(fired_a, fired_b);
            }
        }
    }

    #[test]
    fn an_empty_and_is_reached_by_every_trigger() {
        let mut events = Events::default();
        let a = events.number("a");
        let listeners = vec![
            Listener { name: "x".into(), is_router: false, condition: Condition::Event(a), fires_once: false },
            Listener { name: "y".into(), is_router: false, condition: Condition::All(vec![]), fires_once: false },
        ];
        let graph = FlowGraph::new(listeners, events);
        assert_eq!(graph.candidates("a", false), &[0, 1]);
        assert_eq!(graph.candidates("unknown", false), &[1]);
        assert!(graph.candidates("a", true).is_empty());
    }
}
