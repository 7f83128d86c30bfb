//! Bindings of the tasks component: `FlowGraph`, a Flow definition's method
//! graph compiled once (`crate::tasks::flow_graph`), answering upstream's
//! `Flow._find_triggered_methods` in one call per trigger.
//!
//! A run's bookkeeping stays in the flow's own Python objects, as upstream
//! keeps it (`_pending_events`: listener -> events seen since it last fired;
//! `_fired_or_listeners`), so everything else in the runtime that reads,
//! clears or replaces them works unchanged; this walks only the listeners
//! whose condition names the trigger, instead of all of them.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyString};

use super::errors::guarded;
use crate::tasks::flow_graph::{Condition, Events, FlowGraph as Graph, Listener};

create_exception!(
    _native,
    UnsupportedFlowGraph,
    PyValueError,
    "A flow definition holds a condition the native graph does not compile (upstream's walk reads it instead)."
);

fn unsupported(what: String) -> PyErr {
    UnsupportedFlowGraph::new_err(what)
}

/// One condition as upstream's `_condition_satisfied` reads it: a str names
/// an event; a dict is `{"and": [...]}` (checked first) or `{"or": [...]}`.
fn condition(value: &Bound<'_, PyAny>, events: &mut Events) -> PyResult<Condition> {
    let py = value.py();
    if let Ok(name) = value.cast::<PyString>() {
        let name = name.to_str().map_err(|_| unsupported("an event name that is not valid UTF-8".into()))?;
        return Ok(Condition::Event(events.number(name)));
    }
    let Ok(dict) = value.cast::<PyDict>() else {
        return Err(unsupported(format!("a condition of type {}", value.get_type().name()?)));
    };
    let (all, branches) = match dict.get_item(intern!(py, "and"))? {
        Some(branches) => (true, branches),
        None => match dict.get_item(intern!(py, "or"))? {
            Some(branches) => (false, branches),
            None => return Err(unsupported("a condition dict without \"and\" or \"or\"".into())),
        },
    };
    let branches = branches.try_iter()?.map(|b| condition(&b?, events)).collect::<PyResult<Vec<_>>>()?;
    Ok(if all { Condition::All(branches) } else { Condition::Any(branches) })
}

/// A Flow definition's listeners and routers, indexed by the events their
/// conditions name.
#[pyclass(module = "crewai_rust._native", frozen)]
pub struct FlowGraph {
    graph: Graph,
    /// Per listener, its name as the definition spells it (the pending-events key too).
    names: Vec<Py<PyString>>,
    /// Per event number, its name, for membership tests on the seen sets.
    event_names: Vec<Py<PyString>>,
}

#[pymethods]
impl FlowGraph {
    /// Compile `definition.methods` (a `FlowDefinition`): every method with a
    /// `listen` condition, in definition order. `UnsupportedFlowGraph` for a
    /// condition upstream's reader would treat differently or fail on.
    #[new]
    fn new(definition: &Bound<'_, PyAny>) -> PyResult<Self> {
        guarded(|| {
            let py = definition.py();
            let methods = definition.getattr(intern!(py, "methods"))?;
            let methods = methods.cast::<PyDict>().map_err(|_| unsupported("methods that are not a dict".into()))?;
            let (mut events, mut listeners, mut names) = (Events::default(), Vec::new(), Vec::new());
            for (name, method) in methods.iter() {
                let listen = method.getattr(intern!(py, "listen"))?;
                if listen.is_none() {
                    continue;
                }
                let name = name.cast_into::<PyString>().map_err(|_| unsupported("a method name that is not a str".into()))?;
                let is_router = method.getattr(intern!(py, "router"))?.is_truthy()?;
                let condition = condition(&listen, &mut events)?;
                let several_or = matches!(&condition, Condition::Any(branches) if branches.len() > 1);
                listeners.push(Listener {
                    name: name.to_str().map_err(|_| unsupported("a method name that is not valid UTF-8".into()))?.to_string(),
                    is_router,
                    condition,
                    fires_once: several_or && !is_router,
                });
                names.push(name.unbind());
            }
            let graph = Graph::new(listeners, events);
            let event_names = graph.event_names().iter().map(|n| PyString::new(py, n).unbind()).collect();
            Ok(FlowGraph { graph, names, event_names })
        })
    }

    /// Upstream's `_find_triggered_methods(trigger, router_only)` over the
    /// flow's `pending` (`_pending_events`) and `fired_once`
    /// (`_fired_or_listeners`), which it updates as upstream does for every
    /// listener whose condition names `trigger`: the trigger joins the
    /// listener's seen set; a satisfied listener's set is dropped, its name
    /// returned (in definition order) and, for an `or_` of several events,
    /// added to `fired_once`.
    fn find_triggered<'py>(
        &self,
        trigger: &Bound<'py, PyAny>,
        router_only: bool,
        pending: &Bound<'py, PyDict>,
        fired_once: &Bound<'py, PySet>,
    ) -> PyResult<Bound<'py, PyList>> {
        let py = trigger.py();
        let trigger = trigger.str()?;
        let triggered = PyList::empty(py);
        // A name with lone surrogates names no compiled event (those refuse to compile).
        let candidates = trigger.to_str().map_or(self.graph.unnamed(router_only), |t| self.graph.candidates(t, router_only));
        for &i in candidates {
            let listener = &self.graph.listeners()[i];
            let name = self.names[i].bind(py);
            if listener.fires_once && fired_once.contains(name)? {
                continue;
            }
            let seen = match pending.get_item(name)? {
                Some(seen) => seen,
                None => {
                    let seen = PySet::empty(py)?.into_any();
                    pending.set_item(name, &seen)?;
                    seen
                }
            };
            match seen.cast::<PySet>() {
                Ok(set) => set.add(&trigger)?,
                Err(_) => drop(seen.call_method1(intern!(py, "add"), (&trigger,))?), // not a set: as upstream's call would
            }
            let mut failure = None;
            let satisfied = listener.condition.satisfied(&mut |e| {
                seen.contains(self.event_names[e].bind(py)).unwrap_or_else(|err| {
                    failure.get_or_insert(err);
                    false
                })
            });
            if let Some(err) = failure {
                return Err(err);
            }
            if satisfied {
                pending.del_item(name)?;
                triggered.append(name)?;
                if listener.fires_once {
                    fired_once.add(name)?;
                }
            }
        }
        Ok(triggered)
    }

    fn __repr__(&self) -> String {
        format!("FlowGraph({} listeners, {} events)", self.graph.listeners().len(), self.event_names.len())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("UnsupportedFlowGraph", m.py().get_type::<UnsupportedFlowGraph>())?;
    m.add_class::<FlowGraph>()?;
    Ok(())
}
