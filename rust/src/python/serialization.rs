//! PyO3 bindings for `crewai_rust.serialization`: a JSON encoder and decoder
//! that walk Python objects directly, `to_serializable`, and `AgentMessage`.
//!
//! Each walker mirrors the CPython or crewai code it stands in for, check by
//! check, because the contract is identical output (`Modules/_json.c` for
//! `json.dumps`/`json.loads`, `crewai.utilities.serialization` for
//! `to_serializable`). What it does not reproduce (nesting beyond its limit,
//! invalid documents whose error CPython words) raises `NotHandledNatively`,
//! and the Python wrapper hands that input to the upstream code.

use std::os::raw::c_int;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::Borrowed;
use pyo3::types::{PyBytes, PyDict, PyList, PySet, PyString, PyTuple, PyType};

use crate::serialization::{self as json, DecodeError, Sink, Value};
use super::errors::guarded;

create_exception!(
    _native,
    NotHandledNatively,
    PyException,
    "Input the native serializer leaves to the upstream Python code (which gives the exact result or error)."
);

/// Nesting the encoders follow before handing the input to CPython. Both
/// limits sit below where CPython's own recursion limit stops the upstream
/// code (about 1,000 frames: `json` spends one per level, `to_serializable`
/// two or three), so every input upstream handles is handled here or handed
/// back, and the Rust stack stays small on any thread.
const MAX_ENCODE_NESTING: usize = 512;
const MAX_CONVERT_NESTING: usize = 256;

/// Native stack kept free: below it, the input goes back to Python as if it
/// were too deep (a thread may run with a small stack, and frame sizes vary
/// by build).
const STACK_RESERVE: usize = 128 * 1024;

fn stack_is_low() -> bool {
    stacker::remaining_stack().is_some_and(|left| left < STACK_RESERVE)
}

struct Known {
    /// `(str, int, float, bool, NoneType)`, `(list, tuple, set)`, `dict`,
    /// `type`, `(str, int)`: upstream's isinstance() targets, which honour
    /// `__class__` (a mock with a spec passes them).
    primitives: Py<PyTuple>,
    sequences: Py<PyTuple>,
    dict: Py<PyType>,
    type_type: Py<PyType>,
    key_types: Py<PyTuple>,
    uuid: Py<PyType>,
    date: Py<PyType>,
    datetime: Py<PyType>,
    /// `datetime.timezone.utc`, the zone of `datetime.now(timezone.utc)`.
    utc: Py<PyAny>,
    base_model: Py<PyType>,
    dataclass_fields: Py<PyAny>,
    int_repr: Py<PyAny>,
}

static KNOWN: PyOnceLock<Known> = PyOnceLock::new();

fn known(py: Python<'_>) -> PyResult<&'static Known> {
    KNOWN.get_or_try_init(py, || {
        let builtins = py.import("builtins")?;
        let get = |name: &str| builtins.getattr(name);
        Ok(Known {
            primitives: PyTuple::new(py, [get("str")?, get("int")?, get("float")?, get("bool")?, py.None().into_bound(py).get_type().into_any()])?.unbind(),
            sequences: PyTuple::new(py, [get("list")?, get("tuple")?, get("set")?])?.unbind(),
            dict: get("dict")?.cast_into()?.unbind(),
            type_type: get("type")?.cast_into()?.unbind(),
            key_types: PyTuple::new(py, [get("str")?, get("int")?])?.unbind(),
            uuid: py.import("uuid")?.getattr("UUID")?.cast_into()?.unbind(),
            date: py.import("datetime")?.getattr("date")?.cast_into()?.unbind(),
            datetime: py.import("datetime")?.getattr("datetime")?.cast_into()?.unbind(),
            utc: py.import("datetime")?.getattr("timezone")?.getattr("utc")?.unbind(),
            base_model: py.import("pydantic")?.getattr("BaseModel")?.cast_into()?.unbind(),
            dataclass_fields: py.import("dataclasses")?.getattr("fields")?.unbind(),
            int_repr: get("int")?.getattr("__repr__")?.unbind(),
        })
    })
}

fn is_exact(obj: &Bound<'_, PyAny>, ty: *mut ffi::PyTypeObject) -> bool {
    unsafe { ffi::Py_TYPE(obj.as_ptr()) == ty }
}

fn exact_list() -> *mut ffi::PyTypeObject {
    &raw mut ffi::PyList_Type
}
fn exact_tuple() -> *mut ffi::PyTypeObject {
    &raw mut ffi::PyTuple_Type
}
fn exact_dict() -> *mut ffi::PyTypeObject {
    &raw mut ffi::PyDict_Type
}
fn exact_str() -> *mut ffi::PyTypeObject {
    &raw mut ffi::PyUnicode_Type
}
fn exact_int() -> *mut ffi::PyTypeObject {
    &raw mut ffi::PyLong_Type
}
fn exact_float() -> *mut ffi::PyTypeObject {
    &raw mut ffi::PyFloat_Type
}

/// The str's UTF-8, or `None` when it holds lone surrogates (no UTF-8 form).
fn utf8<'a>(s: &'a Bound<'_, PyAny>) -> Option<&'a str> {
    let mut size: ffi::Py_ssize_t = 0;
    let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size) };
    if data.is_null() {
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    // SAFETY: CPython caches the UTF-8 form in the str object, which `s` keeps alive.
    Some(unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(data as *const u8, size as usize)) })
}

fn write_pystr(out: &mut Vec<u8>, s: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Some(text) = utf8(s) {
        json::write_str(out, text);
        return Ok(());
    }
    let encoded = unsafe {
        Bound::from_owned_ptr_or_err(
            s.py(),
            ffi::PyUnicode_AsEncodedString(s.as_ptr(), c"utf-16-le".as_ptr(), c"surrogatepass".as_ptr()),
        )?
    };
    let bytes = encoded.cast::<PyBytes>()?.as_bytes();
    let units: Vec<u16> = bytes.chunks_exact(2).map(|pair| u16::from_le_bytes([pair[0], pair[1]])).collect();
    json::write_utf16(out, &units);
    Ok(())
}

/// `int.__repr__(obj)`, which `json` writes for any int, subclasses included.
fn write_int(out: &mut Vec<u8>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
    let mut overflow: c_int = 0;
    let value = unsafe { ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut overflow) };
    if overflow == 0 {
        if value == -1 {
            if let Some(err) = PyErr::take(obj.py()) {
                return Err(err);
            }
        }
        json::write_i64(out, value);
        return Ok(());
    }
    let text = known(obj.py())?.int_repr.bind(obj.py()).call1((obj,))?;
    out.extend_from_slice(text.cast::<PyString>()?.to_str()?.as_bytes());
    Ok(())
}

/// What `json` makes of an object, by CPython's checks (subclasses included).
/// The kinds are disjoint (no class can subclass two of str, int, float,
/// list/tuple, dict), so the order of the checks only matters for speed:
/// exact builtin types first, by pointer.
#[derive(Clone, Copy)]
enum Kind {
    Null,
    True,
    False,
    Str,
    Int,
    Float,
    Sequence,
    Mapping,
    Other,
}

impl Kind {
    fn of(ptr: *mut ffi::PyObject) -> Kind {
        let ty = unsafe { ffi::Py_TYPE(ptr) };
        if ty == exact_str() {
            return Kind::Str;
        }
        if ty == exact_int() {
            return Kind::Int;
        }
        if ty == exact_dict() {
            return Kind::Mapping;
        }
        if ty == exact_list() || ty == exact_tuple() {
            return Kind::Sequence;
        }
        if ty == exact_float() {
            return Kind::Float;
        }
        unsafe {
            if ptr == ffi::Py_None() {
                Kind::Null
            } else if ptr == ffi::Py_True() {
                Kind::True
            } else if ptr == ffi::Py_False() {
                Kind::False
            } else if ffi::PyUnicode_Check(ptr) != 0 {
                Kind::Str
            } else if ffi::PyLong_Check(ptr) != 0 {
                Kind::Int
            } else if ffi::PyFloat_Check(ptr) != 0 {
                Kind::Float
            } else if ffi::PyList_Check(ptr) != 0 || ffi::PyTuple_Check(ptr) != 0 {
                Kind::Sequence
            } else if ffi::PyDict_Check(ptr) != 0 {
                Kind::Mapping
            } else {
                Kind::Other
            }
        }
    }

    /// Writing it runs no Python code, so it can be written from a borrowed
    /// reference, without the refcount traffic that protects containers and
    /// `default` results.
    fn is_leaf(self) -> bool {
        !matches!(self, Kind::Sequence | Kind::Mapping | Kind::Other)
    }
}

/// CPython's own recursion accounting (`Py_EnterRecursiveCall`), at the
/// points where the code this mirrors spends it, so a RecursionError comes at
/// the same nesting under the same `sys.setrecursionlimit`.
struct RecursionGuard;

impl RecursionGuard {
    fn enter(context: &'static std::ffi::CStr) -> PyResult<RecursionGuard> {
        if unsafe { ffi::Py_EnterRecursiveCall(context.as_ptr()) } != 0 {
            return Err(PyErr::take(unsafe { Python::assume_attached() })
                .unwrap_or_else(|| PyRuntimeError::new_err("recursion check failed without an exception")));
        }
        Ok(RecursionGuard)
    }
}

impl Drop for RecursionGuard {
    fn drop(&mut self) {
        unsafe { ffi::Py_LeaveRecursiveCall() };
    }
}

const ENCODING: &std::ffi::CStr = c" while encoding a JSON object";

fn float_value(obj: &Bound<'_, PyAny>) -> f64 {
    unsafe { ffi::PyFloat_AsDouble(obj.as_ptr()) }
}

fn type_name(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(obj.get_type().name()?.to_string())
}

// ----------------------------------------------------------------------------- json.dumps

/// `json.dumps(obj, default=default)` with every other argument at its default.
struct Encoder<'py> {
    out: Vec<u8>,
    default: Option<Bound<'py, PyAny>>,
    /// Containers being written, for `check_circular`; its length is the nesting.
    markers: Vec<*mut ffi::PyObject>,
}

impl<'py> Encoder<'py> {
    fn enter(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let id = obj.as_ptr();
        if self.markers.contains(&id) {
            return Err(PyValueError::new_err("Circular reference detected"));
        }
        if self.markers.len() >= MAX_ENCODE_NESTING || stack_is_low() {
            return Err(NotHandledNatively::new_err("nesting beyond the native encoder's limit"));
        }
        self.markers.push(id);
        Ok(())
    }

    fn leave(&mut self) {
        self.markers.pop();
    }

    fn value(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        self.value_of_kind(obj, Kind::of(obj.as_ptr()))
    }

    fn value_of_kind(&mut self, obj: &Bound<'py, PyAny>, kind: Kind) -> PyResult<()> {
        match kind {
            Kind::Null => self.out.extend_from_slice(b"null"),
            Kind::True => self.out.extend_from_slice(b"true"),
            Kind::False => self.out.extend_from_slice(b"false"),
            Kind::Str => write_pystr(&mut self.out, obj)?,
            Kind::Int => write_int(&mut self.out, obj)?,
            Kind::Float => json::write_float(&mut self.out, float_value(obj)),
            Kind::Sequence => {
                let _guard = RecursionGuard::enter(ENCODING)?;
                self.sequence(obj)?;
            }
            Kind::Mapping => {
                let _guard = RecursionGuard::enter(ENCODING)?;
                self.mapping(obj)?;
            }
            Kind::Other => self.via_default(obj)?,
        }
        Ok(())
    }

    fn sequence(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = obj.py();
        let ptr = obj.as_ptr();
        // Exact lists and tuples are read in place, re-checking the length at
        // each step as CPython does; subclasses through their iterator, as
        // PySequence_Fast does.
        let list = is_exact(obj, exact_list());
        let items: Option<Vec<Bound<'py, PyAny>>> =
            if list || is_exact(obj, exact_tuple()) { None } else { Some(obj.try_iter()?.collect::<PyResult<_>>()?) };
        let len = |items: &Option<Vec<Bound<'py, PyAny>>>| -> usize {
            match items {
                Some(items) => items.len(),
                None if list => unsafe { ffi::PyList_Size(ptr) as usize },
                None => unsafe { ffi::PyTuple_Size(ptr) as usize },
            }
        };
        if len(&items) == 0 {
            self.out.extend_from_slice(b"[]");
            return Ok(());
        }
        self.enter(obj)?;
        self.out.push(b'[');
        let mut i = 0;
        while i < len(&items) {
            if i > 0 {
                self.out.extend_from_slice(b", ");
            }
            match &items {
                Some(items) => self.value(&items[i].clone())?,
                None => unsafe {
                    let borrowed = if list {
                        ffi::PyList_GetItem(ptr, i as ffi::Py_ssize_t)
                    } else {
                        ffi::PyTuple_GetItem(ptr, i as ffi::Py_ssize_t)
                    };
                    let kind = Kind::of(borrowed);
                    if kind.is_leaf() {
                        self.value_of_kind(&Borrowed::from_ptr(py, borrowed), kind)?;
                    } else {
                        // Owned: writing it may run Python code that shrinks the list.
                        self.value_of_kind(&Bound::from_borrowed_ptr(py, borrowed), kind)?;
                    }
                },
            }
            i += 1;
        }
        self.out.push(b']');
        self.leave();
        Ok(())
    }

    fn mapping(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let dict = obj.cast::<PyDict>()?;
        if dict.len() == 0 {
            self.out.extend_from_slice(b"{}");
            return Ok(());
        }
        self.enter(obj)?;
        self.out.push(b'{');
        if is_exact(obj, exact_dict()) {
            let mut position: ffi::Py_ssize_t = 0;
            let mut first = true;
            loop {
                let mut key: *mut ffi::PyObject = std::ptr::null_mut();
                let mut value: *mut ffi::PyObject = std::ptr::null_mut();
                if unsafe { ffi::PyDict_Next(obj.as_ptr(), &mut position, &mut key, &mut value) } == 0 {
                    break;
                }
                let py = obj.py();
                let kinds = (Kind::of(key), Kind::of(value));
                if kinds.0.is_leaf() && kinds.1.is_leaf() {
                    unsafe { self.entry(&mut first, &Borrowed::from_ptr(py, key), &Borrowed::from_ptr(py, value), kinds)? };
                } else {
                    // Owned: writing them may run Python code that mutates the dict.
                    let (key, value) = unsafe { (Bound::from_borrowed_ptr(py, key), Bound::from_borrowed_ptr(py, value)) };
                    self.entry(&mut first, &key, &value, kinds)?;
                }
            }
        } else {
            let items = unsafe { Bound::from_owned_ptr_or_err(obj.py(), ffi::PyMapping_Items(obj.as_ptr()))? };
            let mut first = true;
            for item in items.try_iter()? {
                let item = item?;
                let pair = item
                    .cast::<PyTuple>()
                    .ok()
                    .filter(|pair| pair.len() == 2)
                    .ok_or_else(|| PyValueError::new_err("items must return 2-tuples"))?;
                let (key, value) = (pair.get_item(0)?, pair.get_item(1)?);
                let kinds = (Kind::of(key.as_ptr()), Kind::of(value.as_ptr()));
                self.entry(&mut first, &key, &value, kinds)?;
            }
        }
        self.out.push(b'}');
        self.leave();
        Ok(())
    }

    /// One `key: value` pair; `kinds` are the key's and the value's.
    fn entry(
        &mut self,
        first: &mut bool,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        kinds: (Kind, Kind),
    ) -> PyResult<()> {
        if !*first {
            self.out.extend_from_slice(b", ");
        }
        *first = false;
        // CPython's key order: str, float, the three constants, int.
        match kinds.0 {
            Kind::Str => write_pystr(&mut self.out, key)?,
            Kind::Float => {
                self.out.push(b'"');
                json::write_float(&mut self.out, float_value(key));
                self.out.push(b'"');
            }
            Kind::True => self.out.extend_from_slice(b"\"true\""),
            Kind::False => self.out.extend_from_slice(b"\"false\""),
            Kind::Null => self.out.extend_from_slice(b"\"null\""),
            Kind::Int => {
                self.out.push(b'"');
                write_int(&mut self.out, key)?;
                self.out.push(b'"');
            }
            // The TypeError quotes the C-level tp_name, which the limited
            // API does not expose: let json.dumps word it.
            Kind::Sequence | Kind::Mapping | Kind::Other => {
                return Err(NotHandledNatively::new_err("dict key of an unsupported type"))
            }
        }
        self.out.extend_from_slice(b": ");
        self.value_of_kind(value, kinds.1)
    }

    fn via_default(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let Some(default) = self.default.clone() else {
            // JSONEncoder.default's TypeError names `o.__class__`, which may
            // differ from the type: let json.dumps word it.
            return Err(NotHandledNatively::new_err("no default hook for this object"));
        };
        self.enter(obj)?;
        let replacement = default.call1((obj,))?;
        {
            let _guard = RecursionGuard::enter(ENCODING)?;
            self.value(&replacement)?;
        }
        self.leave();
        Ok(())
    }
}

fn new_str<'py>(py: Python<'py>, ascii: &[u8]) -> PyResult<Bound<'py, PyString>> {
    unsafe {
        Ok(Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_FromStringAndSize(ascii.as_ptr().cast(), ascii.len() as ffi::Py_ssize_t),
        )?
        .cast_into_unchecked())
    }
}

thread_local! {
    /// The last call's output buffer: growing a fresh one to a checkpoint's
    /// size costs page faults and copies on every call.
    static OUTPUT: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Buffers up to this size are kept for the thread's next call.
const MAX_KEPT_OUTPUT: usize = 8 << 20;

/// `json.dumps(obj, default=default)`.
#[pyfunction]
#[pyo3(signature = (obj, default = None))]
fn json_dumps<'py>(obj: &Bound<'py, PyAny>, default: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyString>> {
    guarded(|| {
        let mut out = OUTPUT.with(|spare| spare.take());
        out.clear();
        let mut encoder = Encoder { out, default, markers: Vec::new() };
        let written = encoder.value(obj).and_then(|()| new_str(obj.py(), &encoder.out));
        if encoder.out.capacity() <= MAX_KEPT_OUTPUT {
            OUTPUT.with(|spare| spare.replace(encoder.out));
        }
        written
    })
}

// ----------------------------------------------------------------------------- json.loads

struct PySink<'py> {
    py: Python<'py>,
    /// Object keys made so far, direct-mapped by a hash of their text:
    /// documents repeat a few keys many times (CPython's scanner shares them
    /// too); a miss costs one hash and appends the key's text below.
    keys: Vec<SharedKey<'py>>,
    /// The text of the keys in `keys`, one after another, so a hit is one
    /// byte comparison, never a call into CPython for the str's UTF-8.
    key_text: Vec<u8>,
    /// The key table's size, allocated at the first key (scalars need none).
    key_slots: usize,
    /// Arrays and objects open, each holding one `Py_EnterRecursiveCall` as
    /// CPython's scanner does; released as they close, or all at the end when
    /// the parse stops early.
    open: usize,
    /// The items of the arrays being read, innermost last: one buffer for
    /// the whole parse instead of a vector per array.
    items: Vec<Bound<'py, PyAny>>,
}

/// The key table's size bounds: a few slots for a small document (it is
/// filled per call), up to 512 for a large one.
const MIN_KEY_SLOTS: usize = 8;
const MAX_KEY_SLOTS: usize = 512;
const MAX_SHARED_KEY: usize = 48;

/// A slot hash of a key from its length and its first and last eight bytes:
/// two multiplies instead of one per byte. Keys that differ only in between
/// share a slot, which costs a miss, never a wrong key.
fn key_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let n = key.len();
    // Overlapping loads cover every byte of a key up to 16 bytes long.
    let (head, tail) = if n >= 8 {
        (u64::from_le_bytes(key[..8].try_into().unwrap()), u64::from_le_bytes(key[n - 8..].try_into().unwrap()))
    } else if n >= 4 {
        (u32::from_le_bytes(key[..4].try_into().unwrap()) as u64, u32::from_le_bytes(key[n - 4..].try_into().unwrap()) as u64)
    } else if n > 0 {
        (key[0] as u64 | (key[n / 2] as u64) << 8 | (key[n - 1] as u64) << 16, 0)
    } else {
        (0, 0)
    };
    let h = (head ^ n as u64).wrapping_mul(K);
    let h = (h.rotate_left(29) ^ tail).wrapping_mul(K);
    h ^ (h >> 32)
}

/// A slot of the key table: the str, and where its text is in `key_text`.
/// Small (16 bytes), since a small document's decode allocates the table.
struct SharedKey<'py> {
    start: u32,
    len: u32,
    string: Option<Bound<'py, PyString>>,
}

impl<'py> PySink<'py> {
    /// `source_len`: the document's length, which sizes the key table.
    fn new(py: Python<'py>, source_len: usize) -> Self {
        Self::with_key_slots(py, source_len / 256)
    }

    fn with_key_slots(py: Python<'py>, slots: usize) -> Self {
        let key_slots = slots.next_power_of_two().clamp(MIN_KEY_SLOTS, MAX_KEY_SLOTS);
        PySink { py, keys: Vec::new(), key_text: Vec::new(), key_slots, open: 0, items: Vec::new() }
    }

    fn open(&mut self, context: &'static std::ffi::CStr) -> PyResult<()> {
        std::mem::forget(RecursionGuard::enter(context)?);
        self.open += 1;
        Ok(())
    }

    fn close(&mut self) {
        self.open -= 1;
        unsafe { ffi::Py_LeaveRecursiveCall() };
    }

    fn shared_key(&mut self, key: &str) -> Bound<'py, PyString> {
        if key.len() > MAX_SHARED_KEY {
            return PyString::new(self.py, key);
        }
        if self.keys.is_empty() {
            self.keys.resize_with(self.key_slots, || SharedKey { start: 0, len: 0, string: None });
        }
        let slot = (key_hash(key.as_bytes()) as usize) & (self.keys.len() - 1);
        let known = &self.keys[slot];
        if let Some(string) = &known.string {
            let start = known.start as usize;
            if &self.key_text[start..start + known.len as usize] == key.as_bytes() {
                return string.clone();
            }
        }
        let made = PyString::new(self.py, key);
        let start = self.key_text.len();
        if start > u32::MAX as usize - MAX_SHARED_KEY {
            return made;
        }
        self.key_text.extend_from_slice(key.as_bytes());
        self.keys[slot] = SharedKey { start: start as u32, len: key.len() as u32, string: Some(made.clone()) };
        made
    }
}

impl<'py> Sink for PySink<'py> {
    type Value = Bound<'py, PyAny>;
    /// Where the array's items start in `items`.
    type Array = usize;
    type Object = Bound<'py, PyDict>;
    type Key = Bound<'py, PyString>;
    type Error = PyErr;

    fn null(&mut self) -> PyResult<Self::Value> {
        Ok(self.py.None().into_bound(self.py))
    }
    fn boolean(&mut self, value: bool) -> PyResult<Self::Value> {
        Ok(pyo3::types::PyBool::new(self.py, value).to_owned().into_any())
    }
    fn integer(&mut self, literal: &str) -> PyResult<Self::Value> {
        if let Ok(value) = literal.parse::<i64>() {
            return Ok(value.into_pyobject(self.py)?.into_any());
        }
        // Through int() like CPython's scanner, so its digit limit applies alike.
        let builtins = self.py.import("builtins")?;
        builtins.getattr("int")?.call1((literal,))
    }
    fn float(&mut self, value: f64) -> PyResult<Self::Value> {
        Ok(value.into_pyobject(self.py)?.into_any())
    }
    fn string(&mut self, value: &str) -> PyResult<Self::Value> {
        Ok(PyString::new(self.py, value).into_any())
    }
    fn new_array(&mut self) -> PyResult<Self::Array> {
        self.open(c" while decoding a JSON array from a unicode string")?;
        Ok(self.items.len())
    }
    fn push(&mut self, _: &mut Self::Array, value: Self::Value) -> PyResult<()> {
        self.items.push(value);
        Ok(())
    }
    fn finish_array(&mut self, first: Self::Array) -> PyResult<Self::Value> {
        self.close();
        Ok(PyList::new(self.py, self.items.drain(first..))?.into_any())
    }
    fn new_object(&mut self) -> PyResult<Self::Object> {
        self.open(c" while decoding a JSON object from a unicode string")?;
        Ok(PyDict::new(self.py))
    }
    fn key(&mut self, key: &str) -> PyResult<Self::Key> {
        Ok(self.shared_key(key))
    }
    fn insert(&mut self, object: &mut Self::Object, key: Self::Key, value: Self::Value) -> PyResult<()> {
        object.set_item(key, value)
    }
    fn finish_object(&mut self, object: Self::Object) -> PyResult<Self::Value> {
        self.close();
        Ok(object.into_any())
    }
}

/// Python's cyclic collector held off while native code only allocates: no
/// Python code runs and nothing it makes is garbage, yet every 700 new
/// containers would start a collection that walks them all (about 40% of a
/// large document's decode time). Restored on drop, errors included.
pub(crate) struct CollectorPaused {
    was_on: bool,
}

impl CollectorPaused {
    pub(crate) fn new(_py: Python<'_>) -> Self {
        // SAFETY: a plain C API call; the GIL is held (the token proves it).
        CollectorPaused { was_on: unsafe { ffi::PyGC_Disable() } == 1 }
    }
}

impl Drop for CollectorPaused {
    fn drop(&mut self) {
        if self.was_on {
            unsafe { ffi::PyGC_Enable() };
        }
    }
}

/// Decode `source` into `sink`; `Ok(None)` for what CPython must decode or
/// word (an invalid document, a lone surrogate escape, ...).
fn decode_into<'py>(sink: &mut PySink<'py>, source: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    guarded(|| {
        let parsed = json::parse(source, sink);
        while sink.open > 0 {
            sink.close();
        }
        match parsed {
            Ok(value) => Ok(Some(value)),
            Err(DecodeError::Sink(err)) => Err(err),
            Err(DecodeError::Unsupported(_)) => Ok(None),
        }
    })
}

fn decode_pystr<'py>(text: &Bound<'py, PyString>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(source) = utf8(text.as_any()) else {
        return Ok(None); // lone surrogates
    };
    let _paused = CollectorPaused::new(text.py());
    decode_into(&mut PySink::new(text.py(), source.len()), source)
}

/// Decodes the JSON cells of a store's rows with `decode`: natively when it
/// is a [`JsonDecoder`] (one key table for all cells, since rows repeat their
/// keys), else through the Python callable.
pub(crate) struct CellDecoder<'py> {
    /// The native parser's sink, when `decode` is a `JsonDecoder`.
    native: Option<PySink<'py>>,
    /// Where a cell goes that is not decoded natively: the `JsonDecoder`'s
    /// fallback, or `decode` itself.
    python: Bound<'py, PyAny>,
}

impl<'py> CellDecoder<'py> {
    pub(crate) fn new(decode: &Bound<'py, PyAny>) -> Self {
        match decode.cast::<JsonDecoder>() {
            // The cells of a store's columns share a handful of keys.
            Ok(decoder) => CellDecoder {
                native: Some(PySink::with_key_slots(decode.py(), 64)),
                python: decoder.get().fallback.bind(decode.py()).clone(),
            },
            Err(_) => CellDecoder { native: None, python: decode.clone() },
        }
    }

    pub(crate) fn is_native(&self) -> bool {
        self.native.is_some()
    }

    pub(crate) fn decode(&mut self, text: &str) -> PyResult<Bound<'py, PyAny>> {
        if let Some(sink) = &mut self.native {
            if let Some(value) = decode_into(sink, text)? {
                return Ok(value);
            }
        }
        self.python.call1((text,))
    }
}

/// `json.loads(text)` for a str.
#[pyfunction]
fn json_loads<'py>(text: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
    decode_pystr(text)?.ok_or_else(|| NotHandledNatively::new_err("left to CPython's json"))
}

/// `json.loads(document)` as one callable: the native decoder, and `fallback`
/// (`json.loads` itself) for anything it leaves to CPython. A store that
/// decodes two documents per row calls this directly, without a Python-level
/// wrapper per document.
#[pyclass(module = "crewai_rust._native", frozen)]
struct JsonDecoder {
    fallback: Py<PyAny>,
}

#[pymethods]
impl JsonDecoder {
    #[new]
    fn new(fallback: Py<PyAny>) -> Self {
        JsonDecoder { fallback }
    }

    fn __call__<'py>(&self, document: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(text) = document.cast::<PyString>() {
            if let Some(value) = decode_pystr(text)? {
                return Ok(value);
            }
        }
        self.fallback.bind(document.py()).call1((document,))
    }
}

// ----------------------------------------------------------------------------- to_serializable

/// `str(obj)` of an exact `uuid.UUID` and `obj.isoformat()` of an exact
/// `datetime.datetime` or `datetime.date`, written here from their state (about
/// ten times cheaper than CPython's own formatting); None for anything else,
/// subclasses included (they may override either), which then takes upstream's path.
fn exact_scalar_text<'py>(known: &Known, obj: &Bound<'py, PyAny>, ty: *mut ffi::PyTypeObject) -> PyResult<Option<Bound<'py, PyString>>> {
    let py = obj.py();
    let mut out = Vec::with_capacity(48);
    if ty == known.uuid.as_ptr().cast() {
        let Ok(value) = obj.getattr(pyo3::intern!(py, "int"))?.extract::<u128>() else {
            return Ok(None);
        };
        json::write_uuid(&mut out, value);
    } else if ty == known.datetime.as_ptr().cast() || ty == known.date.as_ptr().cast() {
        // (type, (state,)) naive, (type, (state, tzinfo)) aware.
        let reduced = obj.call_method0(pyo3::intern!(py, "__reduce__"))?;
        let args = reduced.get_item(1)?;
        let state = args.get_item(0)?;
        let Some(civil) = state.cast::<PyBytes>().ok().and_then(|b| json::CivilDateTime::from_pickle_state(b.as_bytes())) else {
            return Ok(None);
        };
        let tzinfo = if civil.time.is_some() && args.len()? > 1 { Some(args.get_item(1)?) } else { None };
        let offset = if tzinfo.as_ref().is_some_and(|tz| tz.is(known.utc.bind(py))) {
            Some(0)
        } else if tzinfo.as_ref().is_some_and(|tz| !tz.is_none()) {
            // What isoformat() asks too (a tzinfo may answer None).
            let offset = obj.call_method0(pyo3::intern!(py, "utcoffset"))?;
            if offset.is_none() {
                None
            } else {
                match timedelta_us(&offset) {
                    Some(us) => Some(us),
                    None => return Ok(None),
                }
            }
        } else {
            None
        };
        json::write_isoformat(&mut out, &civil, offset);
    } else {
        return Ok(None);
    }
    Ok(Some(new_str(py, &out)?))
}

/// A `timedelta` as microseconds (None for anything else).
fn timedelta_us(offset: &Bound<'_, PyAny>) -> Option<i64> {
    let py = offset.py();
    let part = |name: &Bound<'_, PyString>| offset.getattr(name).and_then(|v| v.extract::<i64>());
    let (Ok(days), Ok(seconds), Ok(microseconds)) = (
        part(pyo3::intern!(py, "days")),
        part(pyo3::intern!(py, "seconds")),
        part(pyo3::intern!(py, "microseconds")),
    ) else {
        return None;
    };
    Some((days * 86_400 + seconds) * 1_000_000 + microseconds)
}

/// `crewai.utilities.serialization.to_serializable`, branch for branch.
struct Converter<'py> {
    py: Python<'py>,
    known: &'static Known,
    max_depth: i64,
    /// Ids of the containers on the current path (upstream's `_ancestors`).
    ancestors: Vec<usize>,
    /// Set when the nesting limit was hit: that error must not be swallowed by
    /// the pydantic branch's `except Exception`, the whole input goes upstream.
    too_deep: bool,
}

fn is_exception(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyException>(py)
}

impl<'py> Converter<'py> {
    fn excluded(&self, exclude: Option<&Bound<'py, PyAny>>, key: &Bound<'py, PyAny>) -> PyResult<bool> {
        match exclude {
            Some(exclude) => exclude.contains(key),
            None => Ok(false),
        }
    }

    fn key(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if is_exact(key, exact_str()) {
            return Ok(key.clone());
        }
        if key.is_instance(self.known.key_types.bind(self.py))? {
            return Ok(key.str()?.into_any());
        }
        let text = format!("key_{}_{}", key.as_ptr() as usize, key.repr()?.to_str()?);
        Ok(PyString::new(self.py, &text).into_any())
    }

    fn convert(&mut self, obj: &Bound<'py, PyAny>, exclude: Option<&Bound<'py, PyAny>>, depth: i64) -> PyResult<Bound<'py, PyAny>> {
        // Upstream spends a Python frame on each call (and one more on each
        // container's comprehension, below).
        let _frame = RecursionGuard::enter(c"")?;
        if self.max_depth > 0 && depth >= self.max_depth {
            return Ok(obj.repr()?.into_any());
        }
        let ptr = obj.as_ptr();
        let ty = unsafe { ffi::Py_TYPE(ptr) };
        // Exact builtin types by pointer first (the common case): for them
        // isinstance() cannot answer otherwise.
        if ty == exact_str() || ty == exact_int() || ty == exact_float() || unsafe {
            ptr == ffi::Py_None() || ptr == ffi::Py_True() || ptr == ffi::Py_False()
        } {
            return Ok(obj.clone());
        }
        let builtin = ty == exact_list() || ty == exact_dict() || ty == exact_tuple();
        if !builtin {
            let py = self.py;
            if let Some(text) = exact_scalar_text(self.known, obj, ty)? {
                return Ok(text.into_any());
            }
            if obj.is_instance(self.known.primitives.bind(py))? {
                return Ok(obj.clone());
            }
            if obj.is_instance(self.known.uuid.bind(py))? {
                return Ok(obj.str()?.into_any());
            }
            if obj.is_instance(self.known.date.bind(py))? {
                return obj.call_method0("isoformat");
            }
        }
        let id = ptr as usize;
        if self.ancestors.contains(&id) {
            return Ok(PyString::new(self.py, &format!("<circular_ref:{}>", type_name(obj)?)).into_any());
        }
        if self.ancestors.len() >= MAX_CONVERT_NESTING || stack_is_low() {
            self.too_deep = true;
            return Err(NotHandledNatively::new_err("nesting beyond the native converter's limit"));
        }
        self.ancestors.push(id);
        let result = if builtin { self.builtin_container(obj, exclude, depth) } else { self.other(obj, exclude, depth) };
        self.ancestors.pop();
        result
    }

    /// An exact list, tuple or dict: read in place.
    fn builtin_container(&mut self, obj: &Bound<'py, PyAny>, exclude: Option<&Bound<'py, PyAny>>, depth: i64) -> PyResult<Bound<'py, PyAny>> {
        let _comprehension = RecursionGuard::enter(c"")?;
        let ptr = obj.as_ptr();
        if is_exact(obj, exact_dict()) {
            let result = PyDict::new(self.py);
            let dict = obj.cast::<PyDict>()?;
            let size = dict.len();
            let mut position: ffi::Py_ssize_t = 0;
            loop {
                let mut key: *mut ffi::PyObject = std::ptr::null_mut();
                let mut value: *mut ffi::PyObject = std::ptr::null_mut();
                if unsafe { ffi::PyDict_Next(ptr, &mut position, &mut key, &mut value) } == 0 {
                    break;
                }
                let (key, value) = unsafe { (Bound::from_borrowed_ptr(self.py, key), Bound::from_borrowed_ptr(self.py, value)) };
                if !self.excluded(exclude, &key)? {
                    result.set_item(self.key(&key)?, self.convert(&value, exclude, depth + 1)?)?;
                }
                if dict.len() != size {
                    return Err(PyRuntimeError::new_err("dictionary changed size during iteration"));
                }
            }
            return Ok(result.into_any());
        }
        let result = PyList::empty(self.py);
        let mut i = 0;
        while i < obj.len()? {
            result.append(self.convert(&obj.get_item(i)?, exclude, depth + 1)?)?;
            i += 1;
        }
        Ok(result.into_any())
    }

    /// Anything else, through upstream's isinstance() checks in upstream's order.
    fn other(&mut self, obj: &Bound<'py, PyAny>, exclude: Option<&Bound<'py, PyAny>>, depth: i64) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        // dataclasses.is_dataclass(obj) and not isinstance(obj, type)
        if obj.get_type().hasattr("__dataclass_fields__")? && !obj.is_instance(self.known.type_type.bind(py))? {
            let _comprehension = RecursionGuard::enter(c"")?;
            let result = PyDict::new(py);
            for field in self.known.dataclass_fields.bind(py).call1((obj,))?.try_iter()? {
                let name = field?.getattr("name")?;
                if self.excluded(exclude, &name)? {
                    continue;
                }
                let value = obj.getattr(name.cast::<PyString>()?)?;
                result.set_item(&name, self.convert(&value, exclude, depth + 1)?)?;
            }
            return Ok(result.into_any());
        }
        if obj.is_instance(self.known.sequences.bind(py))? {
            let _comprehension = RecursionGuard::enter(c"")?;
            let result = PyList::empty(py);
            for item in obj.try_iter()? {
                result.append(self.convert(&item?, exclude, depth + 1)?)?;
            }
            return Ok(result.into_any());
        }
        if obj.is_instance(self.known.dict.bind(py))? {
            let _comprehension = RecursionGuard::enter(c"")?;
            let result = PyDict::new(py);
            for item in obj.call_method0("items")?.try_iter()? {
                let item = item?;
                let (key, value) = (item.get_item(0)?, item.get_item(1)?);
                if !self.excluded(exclude, &key)? {
                    result.set_item(self.key(&key)?, self.convert(&value, exclude, depth + 1)?)?;
                }
            }
            return Ok(result.into_any());
        }
        if obj.is_instance(self.known.base_model.bind(py))? {
            return self.model(obj, exclude, depth);
        }
        Ok(obj.repr()?.into_any())
    }

    fn model(&mut self, obj: &Bound<'py, PyAny>, exclude: Option<&Bound<'py, PyAny>>, depth: i64) -> PyResult<Bound<'py, PyAny>> {
        let dumped = (|| {
            let kwargs = PyDict::new(self.py);
            kwargs.set_item("mode", "json")?;
            match exclude {
                Some(exclude) => kwargs.set_item("exclude", exclude)?,
                None => kwargs.set_item("exclude", PySet::empty(self.py)?)?,
            }
            kwargs.set_item("serialize_as_any", true)?;
            let data = obj.call_method("model_dump", (), Some(&kwargs))?;
            self.convert(&data, None, depth + 1)
        })();
        let err = match dumped {
            Ok(value) => return Ok(value),
            Err(err) if self.too_deep || !is_exception(self.py, &err) => return Err(err),
            Err(err) => err,
        };
        drop(err);
        let from_attributes = (|| {
            let _comprehension = RecursionGuard::enter(c"")?;
            let result = PyDict::new(self.py);
            let attributes = obj.getattr("__dict__")?;
            for item in attributes.call_method0("items")?.try_iter()? {
                let item = item?;
                let (key, value) = (item.get_item(0)?, item.get_item(1)?);
                if self.excluded(exclude, &key)? {
                    continue;
                }
                result.set_item(self.key(&key)?, self.convert(&value, None, depth + 1)?)?;
            }
            Ok(result.into_any())
        })();
        match from_attributes {
            Ok(value) => Ok(value),
            Err(err) if self.too_deep || !is_exception(self.py, &err) => Err(err),
            Err(_) => Ok(obj.repr()?.into_any()),
        }
    }
}

/// `to_serializable(obj, exclude, max_depth)`. Input nested beyond the native
/// limit, and a `max_depth` that is not an int within i64, goes to
/// `fallback(obj, exclude, max_depth)` (upstream's function), or raises
/// `NotHandledNatively` without one.
#[pyfunction]
#[pyo3(signature = (obj, exclude = None, max_depth = None, fallback = None))]
fn to_serializable<'py>(
    obj: &Bound<'py, PyAny>,
    exclude: Option<Bound<'py, PyAny>>,
    max_depth: Option<Bound<'py, PyAny>>,
    fallback: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let depth_limit = match &max_depth {
        None => Some(5),
        Some(limit) if is_exact(limit, exact_int()) => limit.extract::<i64>().ok(),
        Some(_) => None,
    };
    let hand_over = |reason: &'static str| -> PyResult<Bound<'py, PyAny>> {
        let Some(fallback) = &fallback else {
            return Err(NotHandledNatively::new_err(reason));
        };
        let limit = match &max_depth {
            Some(limit) => limit.clone(),
            None => 5i64.into_pyobject(py)?.into_any(),
        };
        fallback.call1((obj, &exclude, limit))
    };
    let Some(depth_limit) = depth_limit else {
        return hand_over("max_depth is not an int within i64");
    };
    let mut converter = Converter { py, known: known(py)?, max_depth: depth_limit, ancestors: Vec::new(), too_deep: false };
    let converted = guarded(|| converter.convert(obj, exclude.as_ref(), 0));
    match converted {
        Err(_) if converter.too_deep => hand_over("nesting beyond the native converter's limit"),
        result => result,
    }
}

// ----------------------------------------------------------------------------- AgentMessage

const ROLES: [&str; 4] = ["user", "assistant", "system", "tool"];

/// An LLM message held in Rust: crewai's ``LLMMessage`` dict as a typed value.
///
/// ``AgentMessage(role, content=None, *, tool_call_id=None, name=None,
/// tool_calls=None, raw_tool_call_parts=None)``. ``role`` is one of user,
/// assistant, system, tool; ``content`` a str, a list of content-part dicts or
/// None; ``tool_calls`` a list of dicts; every value must have a JSON form.
/// Keys beyond those (provider extras) survive ``from_dict``/``from_json``
/// and come back in ``to_dict``/``to_json``; ``files`` (file objects) is
/// refused with a ``TypeError``. ``to_dict()`` gives the dict LLM clients take,
/// ``to_json()`` equals ``json.dumps(message.to_dict())``. Bad values raise
/// ``TypeError``/``ValueError`` naming the field.
#[pyclass(module = "crewai_rust._native", frozen, skip_from_py_object)]
#[derive(Clone)]
pub struct AgentMessage {
    role: String,
    content: Value,
    tool_call_id: Option<String>,
    name: Option<String>,
    tool_calls: Option<Value>,
    raw_tool_call_parts: Option<Value>,
    /// Keys beyond crewai's LLMMessage, kept so a round trip loses nothing.
    extra: Vec<(String, Value)>,
}

fn python_to_value(obj: &Bound<'_, PyAny>, field: &str, depth: usize) -> PyResult<Value> {
    if depth >= json::MAX_NESTING || stack_is_low() {
        return Err(PyValueError::new_err(format!(
            "AgentMessage field '{field}' is nested deeper than {} levels",
            json::MAX_NESTING
        )));
    }
    match Kind::of(obj.as_ptr()) {
        Kind::Null => Ok(Value::Null),
        Kind::True => Ok(Value::Bool(true)),
        Kind::False => Ok(Value::Bool(false)),
        Kind::Str => {
            let text = utf8(obj).ok_or_else(|| {
                PyValueError::new_err(format!("AgentMessage field '{field}' holds a string with lone surrogates"))
            })?;
            Ok(Value::Str(text.to_string()))
        }
        Kind::Int => Ok(match obj.extract::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => {
                let known = known(obj.py())?;
                Value::BigInt(known.int_repr.bind(obj.py()).call1((obj,))?.extract()?)
            }
        }),
        Kind::Float => Ok(Value::Float(float_value(obj))),
        Kind::Sequence => {
            let mut items = Vec::new();
            for item in obj.try_iter()? {
                items.push(python_to_value(&item?, field, depth + 1)?);
            }
            Ok(Value::Array(items))
        }
        Kind::Mapping => {
            let mut entries = Vec::new();
            for (key, value) in obj.cast::<PyDict>()?.iter() {
                let key = key.cast::<PyString>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "AgentMessage field '{field}' has a dict key of type {}; JSON keys are str",
                        type_name(&key).unwrap_or_default()
                    ))
                })?;
                json::set_entry(&mut entries, key.to_str()?.to_owned(), python_to_value(&value, field, depth + 1)?);
            }
            Ok(Value::Object(entries))
        }
        Kind::Other => Err(PyTypeError::new_err(format!(
            "AgentMessage field '{field}' holds a {}, which has no JSON form",
            type_name(obj)?
        ))),
    }
}

fn value_to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    let mut sink = PySink::new(py, 0);
    Ok(match value {
        Value::Null => sink.null()?,
        Value::Bool(b) => sink.boolean(*b)?,
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::BigInt(literal) => sink.integer(literal)?,
        Value::Float(f) => sink.float(*f)?,
        Value::Str(s) => sink.string(s)?,
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(entries) => {
            let dict = PyDict::new(py);
            for (key, item) in entries {
                dict.set_item(key, value_to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

fn optional_str(value: Option<Value>, field: &str) -> PyResult<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(_) => Err(PyTypeError::new_err(format!("AgentMessage field '{field}' must be a str"))),
    }
}

fn files_refused() -> PyErr {
    PyTypeError::new_err("AgentMessage cannot hold 'files' (file objects have no JSON form); keep such messages as dicts")
}

impl AgentMessage {
    /// Builds a message from its fields in LLMMessage order, validating each.
    fn from_entries(mut entries: Vec<(String, Value)>) -> PyResult<Self> {
        if entries.iter().any(|(key, _)| key == "files") {
            return Err(files_refused());
        }
        let mut take = |key: &str| -> Option<Value> {
            let index = entries.iter().position(|(k, _)| k == key)?;
            Some(entries.remove(index).1)
        };
        let role = match take("role") {
            Some(Value::Str(role)) if ROLES.contains(&role.as_str()) => role,
            Some(Value::Str(role)) => {
                return Err(PyValueError::new_err(format!(
                    "AgentMessage field 'role' must be one of user, assistant, system, tool; got {role:?}"
                )))
            }
            Some(_) => return Err(PyTypeError::new_err("AgentMessage field 'role' must be a str")),
            None => return Err(PyValueError::new_err("AgentMessage needs a 'role'")),
        };
        let content = match take("content") {
            None => Value::Null,
            Some(content @ (Value::Null | Value::Str(_))) => content,
            Some(Value::Array(parts)) => {
                if parts.iter().any(|part| !matches!(part, Value::Object(_))) {
                    return Err(PyTypeError::new_err("AgentMessage field 'content' must be a str, a list of dicts or None"));
                }
                Value::Array(parts)
            }
            Some(_) => return Err(PyTypeError::new_err("AgentMessage field 'content' must be a str, a list of dicts or None")),
        };
        let tool_call_id = optional_str(take("tool_call_id"), "tool_call_id")?;
        let name = optional_str(take("name"), "name")?;
        let tool_calls = match take("tool_calls") {
            None | Some(Value::Null) => None,
            Some(Value::Array(calls)) if calls.iter().all(|call| matches!(call, Value::Object(_))) => Some(Value::Array(calls)),
            Some(_) => return Err(PyTypeError::new_err("AgentMessage field 'tool_calls' must be a list of dicts")),
        };
        let raw_tool_call_parts = match take("raw_tool_call_parts") {
            None | Some(Value::Null) => None,
            Some(parts @ Value::Array(_)) => Some(parts),
            Some(_) => return Err(PyTypeError::new_err("AgentMessage field 'raw_tool_call_parts' must be a list")),
        };
        Ok(AgentMessage { role, content, tool_call_id, name, tool_calls, raw_tool_call_parts, extra: entries })
    }

    fn role_value(&self) -> Value {
        Value::Str(self.role.clone())
    }

    fn to_value(&self) -> Value {
        let mut entries = vec![("role".to_string(), self.role_value()), ("content".to_string(), self.content.clone())];
        if let Some(id) = &self.tool_call_id {
            entries.push(("tool_call_id".to_string(), Value::Str(id.clone())));
        }
        if let Some(name) = &self.name {
            entries.push(("name".to_string(), Value::Str(name.clone())));
        }
        if let Some(calls) = &self.tool_calls {
            entries.push(("tool_calls".to_string(), calls.clone()));
        }
        if let Some(parts) = &self.raw_tool_call_parts {
            entries.push(("raw_tool_call_parts".to_string(), parts.clone()));
        }
        entries.extend(self.extra.iter().cloned());
        Value::Object(entries)
    }
}

#[pymethods]
impl AgentMessage {
    #[new]
    #[pyo3(signature = (role, content = None, *, tool_call_id = None, name = None, tool_calls = None, raw_tool_call_parts = None))]
    fn new(
        role: &Bound<'_, PyAny>,
        content: Option<&Bound<'_, PyAny>>,
        tool_call_id: Option<&Bound<'_, PyAny>>,
        name: Option<&Bound<'_, PyAny>>,
        tool_calls: Option<&Bound<'_, PyAny>>,
        raw_tool_call_parts: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut entries = vec![("role".to_string(), python_to_value(role, "role", 0)?)];
        let optional = [
            ("content", content),
            ("tool_call_id", tool_call_id),
            ("name", name),
            ("tool_calls", tool_calls),
            ("raw_tool_call_parts", raw_tool_call_parts),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                entries.push((field.to_string(), python_to_value(value, field, 0)?));
            }
        }
        guarded(|| Self::from_entries(entries))
    }

    #[staticmethod]
    fn from_dict(message: &Bound<'_, PyAny>) -> PyResult<Self> {
        let dict = message
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err(format!("AgentMessage.from_dict takes a dict, not {}", type_name(message).unwrap_or_default())))?;
        let mut entries = Vec::with_capacity(dict.len());
        for (key, value) in dict.iter() {
            let key = key.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!("AgentMessage keys are str, not {}", type_name(&key).unwrap_or_default()))
            })?;
            let field = key.to_str()?;
            if field == "files" {
                return Err(files_refused());
            }
            entries.push((field.to_string(), python_to_value(&value, field, 0)?));
        }
        guarded(|| Self::from_entries(entries))
    }

    #[staticmethod]
    fn from_json(py: Python<'_>, text: &str) -> PyResult<Self> {
        // Parsing into Rust values touches no Python object: other threads run meanwhile.
        guarded(|| match py.detach(|| json::parse(text, &mut json::ValueSink)) {
            Ok(Value::Object(entries)) => Self::from_entries(entries),
            Ok(_) => Err(PyValueError::new_err("AgentMessage JSON must be an object")),
            Err(DecodeError::Unsupported(reason)) => Err(PyValueError::new_err(format!("invalid AgentMessage JSON: {reason}"))),
            Err(DecodeError::Sink(never)) => match never {},
        })
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_python(py, &self.to_value())
    }

    fn to_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let out = py.detach(|| {
            let mut out = Vec::with_capacity(128);
            json::write_value(&mut out, &self.to_value());
            out
        });
        new_str(py, &out)
    }

    #[getter]
    fn role(&self) -> &str {
        &self.role
    }

    #[getter]
    fn content<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_python(py, &self.content)
    }

    #[getter]
    fn tool_call_id(&self) -> Option<&str> {
        self.tool_call_id.as_deref()
    }

    #[getter]
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    #[getter]
    fn tool_calls<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.tool_calls.as_ref().map(|calls| value_to_python(py, calls)).transpose()
    }

    #[getter]
    fn raw_tool_call_parts<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.raw_tool_call_parts.as_ref().map(|parts| value_to_python(py, parts)).transpose()
    }

    /// Equal when the dict forms are equal (so key order and 1 == 1.0 are
    /// seen as a dict sees them, and a NaN is never equal).
    fn __eq__<'py>(&self, py: Python<'py>, other: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
        let Ok(other) = other.cast::<AgentMessage>() else {
            return Ok(py.NotImplemented());
        };
        let equal = self.to_dict(py)?.eq(other.get().to_dict(py)?)?;
        Ok(pyo3::types::PyBool::new(py, equal).to_owned().into_any().unbind())
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyString>,))> {
        let py = slf.py();
        Ok((slf.get_type().getattr("from_json")?, (slf.get().to_json(py)?,)))
    }

    fn __repr__(&self) -> String {
        let mut out = Vec::new();
        json::write_value(&mut out, &self.to_value());
        format!("AgentMessage({})", String::from_utf8_lossy(&out))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("NotHandledNatively", m.py().get_type::<NotHandledNatively>())?;
    m.add_function(wrap_pyfunction!(json_dumps, m)?)?;
    m.add_function(wrap_pyfunction!(json_loads, m)?)?;
    m.add_class::<JsonDecoder>()?;
    m.add_function(wrap_pyfunction!(to_serializable, m)?)?;
    m.add_class::<AgentMessage>()?;
    Ok(())
}
