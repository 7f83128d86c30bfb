//! Bindings of the tasks component: `FlowGraph`, a Flow definition's method
//! graph compiled once (`crate::tasks::flow_graph`), answering upstream's
//! `Flow._find_triggered_methods` in one call per trigger; `TaskPool`, the
//! bounded worker threads (`crate::tasks::worker_pool`) that run async tasks.
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

use std::sync::Arc;
use std::time::Duration;

use super::errors::{guarded, timeout_seconds, RustPanicError};
use crate::tasks::flow_graph::{Condition, Events, FlowGraph as Graph, Listener};
use crate::tasks::worker_pool::{Runner, SubmitError, WorkerPool};

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

/// Runs a pooled job: a Python callable called with no argument, the GIL
/// taken for the call only. The callable owns its outcome (the Python side
/// resolves a future whatever it raises); what still escapes is reported as
/// an unraisable exception, as a thread's uncaught exception would be.
struct CallPython;

impl Runner<Py<PyAny>> for CallPython {
    fn run(&self, job: Py<PyAny>) {
        Python::attach(|py| {
            let job = job.into_bound(py);
            if let Err(err) = job.call0() {
                err.write_unraisable(py, Some(&job));
            }
        })
    }

    fn on_panic(&self, message: String) {
        Python::attach(|py| {
            RustPanicError::new_err(format!("Rust panic in crewai_rust's task pool: {message}")).write_unraisable(py, None)
        })
    }
}

/// Statistics of a `TaskPool`.
#[pyclass(module = "crewai_rust._native", frozen, get_all)]
pub struct TaskPoolStats {
    /// Worker threads alive now.
    workers: usize,
    /// The most worker threads alive at once since the pool was made.
    peak_workers: usize,
    /// Jobs running now.
    running: usize,
    /// Jobs waiting for a worker.
    queued: usize,
}

/// Worker threads, created natively, that call queued Python callables: at
/// most `max_workers` at once (a `nested` job, submitted from a running one,
/// may start one more), each reused until idle for `idle_seconds`.
#[pyclass(module = "crewai_rust._native", frozen)]
pub struct TaskPool {
    pool: WorkerPool<Py<PyAny>>,
}

#[pymethods]
impl TaskPool {
    #[new]
    #[pyo3(signature = (max_workers, *, stack_size = 8 * 1024 * 1024, idle_seconds = 60.0, name = "crewai-task"))]
    fn new(max_workers: usize, stack_size: usize, idle_seconds: f64, name: &str) -> PyResult<Self> {
        if max_workers == 0 {
            return Err(PyValueError::new_err("max_workers must be at least 1"));
        }
        if stack_size < 64 * 1024 {
            return Err(PyValueError::new_err(format!("stack_size must be at least 65536 bytes, not {stack_size}")));
        }
        let idle = timeout_seconds("idle_seconds", idle_seconds)?;
        Ok(TaskPool { pool: WorkerPool::new(max_workers, stack_size, idle, name, Arc::new(CallPython)) })
    }

    #[getter]
    fn max_workers(&self) -> usize {
        self.pool.max_workers()
    }

    /// Queue `job` (called with no argument on a worker thread). `RuntimeError`
    /// when the pool is shut down or no worker thread could be started.
    #[pyo3(signature = (job, *, nested = false))]
    fn submit(&self, job: Bound<'_, PyAny>, nested: bool) -> PyResult<()> {
        if !job.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "a pooled job must be callable, not {}",
                job.get_type().name()?
            )));
        }
        guarded(|| match self.pool.submit(job.unbind(), nested) {
            Ok(()) => Ok(()),
            Err((_, SubmitError::Closed)) => {
                Err(pyo3::exceptions::PyRuntimeError::new_err("cannot schedule new tasks after shutdown"))
            }
            Err((_, SubmitError::Spawn(why))) => Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                "could not start a task worker thread: {why}"
            ))),
        })
    }

    /// Refuse new jobs; return the queued ones (never started). Running jobs finish.
    fn shutdown<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let queued = py.detach(|| self.pool.close());
        PyList::new(py, queued)
    }

    /// Wait, without the GIL, until no job runs or waits; at most `timeout`
    /// seconds (None: no limit). True when the pool is idle.
    #[pyo3(signature = (timeout = None))]
    fn wait_idle(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let limit: Option<Duration> = timeout.map(|t| timeout_seconds("timeout", t)).transpose()?;
        Ok(py.detach(|| self.pool.wait_idle(limit)))
    }

    fn stats(&self) -> TaskPoolStats {
        let s = self.pool.stats();
        TaskPoolStats { workers: s.workers, peak_workers: s.peak_workers, running: s.running, queued: s.queued }
    }

    fn __repr__(&self) -> String {
        let s = self.pool.stats();
        format!("TaskPool(max_workers={}, workers={}, running={}, queued={})", self.pool.max_workers(), s.workers, s.running, s.queued)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("UnsupportedFlowGraph", m.py().get_type::<UnsupportedFlowGraph>())?;
    m.add_class::<FlowGraph>()?;
    m.add_class::<TaskPool>()?;
    m.add_class::<TaskPoolStats>()?;
    Ok(())
}
