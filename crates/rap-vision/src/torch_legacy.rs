//! A reader for PyTorch's legacy (non-zip) checkpoint format, as `torch.save(...,
//! _use_new_zipfile_serialization=False)` and torch < 1.6 write it, returning candle tensors.
//!
//! # The format
//! One file holds, back to back:
//! 1. a pickle of the magic number `0x1950a86a20f9469cfc6c` (a 10-byte `LONG1`);
//! 2. a pickle of the protocol version, `1001`;
//! 3. a pickle of `sys_info`, a dict (`little_endian` must be true here);
//! 4. the pickled object itself (a state dict). Each storage is a *persistent id*, the tuple
//!    `('storage', torch.FloatStorage, key, location, numel, view_metadata)`, and each tensor
//!    a `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` call;
//! 5. a pickle of the list of storage keys, in the order the storages follow;
//! 6. for each key: its element count as a little-endian `i64`, then the raw little-endian data.
//!
//! # Why a pickle VM of our own
//! candle-core's `pickle` module (for the zip format) has a pickle VM, `pickle::Stack`, and we
//! checked whether it could run these pickles. It cannot, safely: its `LONG1` decodes into an
//! `i64` with a shift that overflows on the 10-byte magic number (a panic in debug builds); its
//! memo `BINGET` deep-clones the memoised object, so a crafted file of a few kilobytes can
//! double its memory with every opcode; it allocates a `BINUNICODE` buffer of whatever length
//! the file claims before reading it; it maps the `DICT` opcode to `EMPTY_DICT`; and it lacks
//! `SHORT_BINSTRING`, `BINBYTES`, `LIST`, `POP` and other opcodes the standard pickler emits.
//! So the small VM below is written here: shared (reference-counted) memo values, every length
//! checked against the bytes that are left, and an error - never a panic - on anything
//! unexpected. What we reuse from candle is the tensor side: [`DType`] and [`Tensor`].

use candle_core::{DType, Device, Tensor};
use rap_core::{Error, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

/// The magic number at the start of a legacy file, as the little-endian bytes of its `LONG1`.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;
/// Largest checkpoint we read (the whole file is held in memory).
const MAX_FILE_BYTES: u64 = 4 << 30;
/// Deepest nesting of pickled containers we accept (bounds recursion when walking values).
const MAX_DEPTH: usize = 64;

/// A pickled value. Containers are shared, as Python objects are: a memo `GET` costs a
/// reference count, not a copy.
#[derive(Debug, Clone)]
#[allow(dead_code)] // payloads of values we skip are kept for `Debug` output
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too wide for `i64`: its little-endian two's-complement bytes.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<[Value]>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Rc<str>, Rc<str>),
    PersistentId(Rc<Value>),
    Tensor(Rc<TensorRef>),
    /// The result of calling something we do not model (kept opaque).
    Object(Rc<(Value, Value)>),
}

/// A tensor as the pickle describes it: a view into a storage.
#[derive(Debug, Clone)]
struct TensorRef {
    storage_key: String,
    /// The storage's class, e.g. `FloatStorage`.
    storage_class: String,
    /// Elements of the root storage before this storage starts (legacy storage views).
    base_offset: u64,
    offset: u64,
    size: Vec<u64>,
    stride: Vec<u64>,
}

fn bad(path: &str, msg: impl std::fmt::Display) -> Error {
    Error::Model(format!(
        "{path}: not a valid legacy torch checkpoint: {msg}"
    ))
}

/// A cursor over the file's bytes; every read checks what is left.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    name: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.bytes.len() - self.pos {
            return Err(bad(
                self.name,
                format!(
                    "needs {n} bytes at offset {} but only {} are left",
                    self.pos,
                    self.bytes.len() - self.pos
                ),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad(self.name, "unterminated GLOBAL name"))?;
        let s = std::str::from_utf8(&rest[..end])
            .map_err(|_| bad(self.name, "GLOBAL name is not UTF-8"))?;
        self.pos += end + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<Rc<str>> {
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(Rc::from)
            .map_err(|_| bad(self.name, "string is not UTF-8"))
    }
}

/// The pickle machine: stack, mark positions and memo.
struct Machine<'r, 'a> {
    r: &'r mut Reader<'a>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Storage key -> storage class of every storage persistent id seen.
    storages: &'r mut HashMap<String, String>,
}

impl<'r, 'a> Machine<'r, 'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        bad(self.r.name, format!("{msg} (at byte {})", self.r.pos))
    }
    fn pop(&mut self) -> Result<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err("pickle pops past a MARK"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.err("pickle stack underflow"))
    }
    fn top(&mut self) -> Result<&mut Value> {
        let name = self.r.name;
        let pos = self.r.pos;
        self.stack
            .last_mut()
            .ok_or_else(|| bad(name, format!("pickle stack underflow (at byte {pos})")))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err("no MARK on the stack"))?;
        if m > self.stack.len() {
            return Err(self.err("MARK past the top of the stack"));
        }
        Ok(self.stack.split_off(m))
    }
    fn memo_put(&mut self, id: u32) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(id, v);
        Ok(())
    }
    fn memo_get(&mut self, id: u32) -> Result<()> {
        let v = self
            .memo
            .get(&id)
            .cloned()
            .ok_or_else(|| self.err(format!("memo entry {id} does not exist")))?;
        self.stack.push(v);
        Ok(())
    }
    fn add_items(&mut self, items: Vec<Value>) -> Result<()> {
        if items.len() % 2 == 1 {
            return Err(self.err("SETITEMS with an odd number of values"));
        }
        let target = self.top()?.clone();
        let Value::Dict(d) = target else {
            return Err(self.err("SETITEM(S) on something that is not a dict"));
        };
        let mut d = d.borrow_mut();
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }
    fn append(&mut self, items: Vec<Value>) -> Result<()> {
        let target = self.top()?.clone();
        match target {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            _ => Err(self.err("APPEND(S) on something that is not a list")),
        }
    }

    /// Runs one pickle up to its STOP and returns the value it built.
    fn run(mut self) -> Result<Value> {
        loop {
            let op = self.r.u8()?;
            match op {
                0x80 => {
                    let proto = self.r.u8()?;
                    if proto > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.r.u64()?; // FRAME: a size hint only
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.r.u8()?;
                    self.stack.push(Value::Int(v as i64))
                }
                b'M' => {
                    let v = self.r.u16()?;
                    self.stack.push(Value::Int(v as i64))
                }
                b'J' => {
                    let v = self.r.u32()? as i32;
                    self.stack.push(Value::Int(v as i64))
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.r.u8()? as usize
                    } else {
                        self.r.u32()? as usize
                    };
                    let b = self.r.take(n)?;
                    self.stack.push(long_value(b));
                }
                b'G' => {
                    let b = self.r.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)))
                }
                b'X' => {
                    let n = self.r.u32()? as usize;
                    let s = self.r.string(n)?;
                    self.stack.push(Value::Str(s))
                }
                0x8c => {
                    let n = self.r.u8()? as usize;
                    let s = self.r.string(n)?;
                    self.stack.push(Value::Str(s))
                }
                0x8d => {
                    let n = usize::try_from(self.r.u64()?).map_err(|_| self.err("huge string"))?;
                    let s = self.r.string(n)?;
                    self.stack.push(Value::Str(s))
                }
                // BINSTRING / SHORT_BINSTRING (Python 2 str): kept as text when UTF-8.
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.r.u32()? as usize
                    } else {
                        self.r.u8()? as usize
                    };
                    let b = self.r.take(n)?;
                    self.stack.push(match std::str::from_utf8(b) {
                        Ok(s) => Value::Str(Rc::from(s)),
                        Err(_) => Value::Bytes(Rc::from(b)),
                    })
                }
                b'B' | b'C' => {
                    let n = if op == b'B' {
                        self.r.u32()? as usize
                    } else {
                        self.r.u8()? as usize
                    };
                    let b = self.r.take(n)?;
                    self.stack.push(Value::Bytes(Rc::from(b)))
                }
                b'c' => {
                    let module = Rc::from(self.r.line()?);
                    let name = Rc::from(self.r.line()?);
                    self.stack.push(Value::Global(module, name))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b')' => self.stack.push(Value::Tuple(Rc::from(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::from(items)))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.stack.push(Value::Tuple(Rc::from(items)))
                }
                b']' => self.stack.push(Value::List(Rc::default())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))))
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?
                }
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Rc::default()));
                    self.add_items(items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.add_items(vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.add_items(items)?
                }
                b'q' => {
                    let id = self.r.u8()? as u32;
                    self.memo_put(id)?
                }
                b'r' => {
                    let id = self.r.u32()?;
                    self.memo_put(id)?
                }
                0x94 => {
                    let id = self.memo.len() as u32;
                    self.memo_put(id)?
                }
                b'h' => {
                    let id = self.r.u8()? as u32;
                    self.memo_get(id)?
                }
                b'j' => {
                    let id = self.r.u32()?;
                    self.memo_get(id)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    if let Value::Tuple(t) = &pid {
                        if let [Value::Str(tag), Value::Global(_, class), Value::Str(key), ..] =
                            &t[..]
                        {
                            if &**tag == "storage" {
                                self.storages.insert(key.to_string(), class.to_string());
                            }
                        }
                    }
                    self.stack.push(Value::PersistentId(Rc::new(pid)))
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.stack.push(v)
                }
                b'b' => {
                    // BUILD sets an object's state. For dicts (an OrderedDict's `_metadata`
                    // attribute) and opaque objects the state does not matter here.
                    self.pop()?;
                    self.top()?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v)
                }
                other => {
                    return Err(self.err(format!("unsupported pickle opcode 0x{other:02x}")));
                }
            }
        }
    }

    /// REDUCE / NEWOBJ: the calls a checkpoint makes are modelled; anything else stays opaque.
    fn call(&self, callable: Value, args: Value) -> Result<Value> {
        let Value::Global(module, name) = &callable else {
            return Ok(Value::Object(Rc::new((callable, args))));
        };
        let args_vec: &[Value] = match &args {
            Value::Tuple(t) => t,
            _ => &[],
        };
        Ok(match (&**module, &**name) {
            ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => {
                Value::Dict(Rc::default())
            }
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                Value::Tensor(Rc::new(self.rebuild_tensor(args_vec)?))
            }
            ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state") => match args_vec.first() {
                Some(t @ Value::Tensor(_)) => t.clone(),
                _ => return Err(self.err("_rebuild_parameter without a tensor")),
            },
            _ => Value::Object(Rc::new((callable, args))),
        })
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks)`.
    fn rebuild_tensor(&self, args: &[Value]) -> Result<TensorRef> {
        let [storage, offset, size, stride, ..] = args else {
            return Err(self.err("_rebuild_tensor with too few arguments"));
        };
        let Value::PersistentId(pid) = storage else {
            return Err(self.err("tensor storage is not a persistent id"));
        };
        let Value::Tuple(pid) = &**pid else {
            return Err(self.err("storage persistent id is not a tuple"));
        };
        // ('storage', storage_type, key, location, numel, view_metadata)
        let (class, key, view) = match &pid[..] {
            [Value::Str(tag), Value::Global(_, class), Value::Str(key), _, _, view]
                if &**tag == "storage" =>
            {
                (class, key, view)
            }
            _ => return Err(self.err("unexpected storage persistent id")),
        };
        let base_offset = match view {
            Value::None => 0,
            // Old storage views: (view_key, offset, view_size) into the root storage.
            Value::Tuple(v) => match v.get(1) {
                Some(Value::Int(o)) if *o >= 0 => *o as u64,
                _ => return Err(self.err("bad storage view metadata")),
            },
            _ => return Err(self.err("bad storage view metadata")),
        };
        let int = |v: &Value| match v {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            _ => Err(self.err("tensor offset/size/stride is not a non-negative integer")),
        };
        let ints = |v: &Value| match v {
            Value::Tuple(t) => t.iter().map(int).collect::<Result<Vec<_>>>(),
            _ => Err(self.err("tensor size/stride is not a tuple")),
        };
        let (size, stride) = (ints(size)?, ints(stride)?);
        if size.len() != stride.len() || size.len() > 16 {
            return Err(self.err("tensor size and stride disagree"));
        }
        Ok(TensorRef {
            storage_key: key.to_string(),
            storage_class: class.to_string(),
            base_offset,
            offset: int(offset)?,
            size,
            stride,
        })
    }
}

/// A `LONG1`/`LONG4` payload: little-endian two's complement.
fn long_value(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    if b.len() <= 8 {
        let neg = b[b.len() - 1] & 0x80 != 0;
        let mut a = [if neg { 0xff } else { 0 }; 8];
        a[..b.len()].copy_from_slice(b);
        Value::Int(i64::from_le_bytes(a))
    } else {
        Value::BigInt(Rc::from(b))
    }
}

fn run_pickle(r: &mut Reader, storages: &mut HashMap<String, String>) -> Result<Value> {
    Machine {
        r,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages,
    }
    .run()
}

/// Element type and size of a storage class, and the candle dtype it becomes. Integer types
/// candle lacks (`int8`, `bool`) are widened.
fn storage_dtype(class: &str) -> Option<(usize, DType)> {
    Some(match class {
        "FloatStorage" => (4, DType::F32),
        "DoubleStorage" => (8, DType::F64),
        "HalfStorage" => (2, DType::F16),
        "BFloat16Storage" => (2, DType::BF16),
        "LongStorage" => (8, DType::I64),
        "IntStorage" => (4, DType::I32),
        "ShortStorage" => (2, DType::I16),
        "ByteStorage" => (1, DType::U8),
        "BoolStorage" => (1, DType::U8),
        "CharStorage" => (1, DType::I16),
        _ => return None,
    })
}

/// Reads a legacy checkpoint file and returns its tensors by name, on the CPU.
pub fn read_legacy_pth(path: &Path) -> Result<HashMap<String, Tensor>> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(Error::Model(format!(
            "{}: {len} bytes is larger than the {} GiB a checkpoint may have",
            path.display(),
            MAX_FILE_BYTES >> 30
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_legacy_pth(&bytes, &path.display().to_string())
}

/// Parses the bytes of a legacy checkpoint; `name` is used in error messages.
///
/// The pickled object must be a dict of tensors (a state dict), or a dict holding one under
/// `state_dict` or `model`. Non-tensor entries are skipped.
pub fn parse_legacy_pth(bytes: &[u8], name: &str) -> Result<HashMap<String, Tensor>> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(bad(
            name,
            "this is the zip checkpoint format (torch >= 1.6); read it with candle's pickle module",
        ));
    }
    let mut r = Reader {
        bytes,
        pos: 0,
        name,
    };
    let mut classes = HashMap::new();
    match run_pickle(&mut r, &mut classes)? {
        Value::BigInt(b) if *b == MAGIC => {}
        _ => return Err(bad(name, "wrong magic number")),
    }
    match run_pickle(&mut r, &mut classes)? {
        Value::Int(PROTOCOL_VERSION) => {}
        v => return Err(bad(name, format!("unsupported protocol version {v:?}"))),
    }
    if let Value::Dict(info) = run_pickle(&mut r, &mut classes)? {
        for (k, v) in info.borrow().iter() {
            if matches!(k, Value::Str(s) if &**s == "little_endian")
                && matches!(v, Value::Bool(false))
            {
                return Err(bad(name, "big-endian checkpoints are not supported"));
            }
        }
    } else {
        return Err(bad(name, "sys_info is not a dict"));
    }
    let root = run_pickle(&mut r, &mut classes)?;
    let keys = match run_pickle(&mut r, &mut classes)? {
        Value::List(l) => l
            .borrow()
            .iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s.to_string()),
                _ => Err(bad(name, "storage key is not a string")),
            })
            .collect::<Result<Vec<_>>>()?,
        _ => return Err(bad(name, "storage key list missing")),
    };

    let mut tensors = Vec::new();
    collect_tensors(&root, "", 0, &mut tensors, name)?;
    if tensors.is_empty() {
        return Err(bad(name, "the checkpoint holds no tensors"));
    }
    // The raw storages follow, in key order: numel (i64), then numel * element size bytes.
    // Every storage's element size must be known to find the next one.
    let mut storages: HashMap<&str, (&[u8], u64)> = HashMap::new();
    for key in &keys {
        let class = classes
            .get(key)
            .ok_or_else(|| bad(name, format!("storage {key} is listed but never described")))?;
        let (size, _) = storage_dtype(class)
            .ok_or_else(|| bad(name, format!("storage {key}: unsupported type {class}")))?;
        let numel = r.u64()?;
        let nbytes = numel
            .checked_mul(size as u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| bad(name, format!("storage {key} claims {numel} elements")))?;
        let data = r.take(nbytes).map_err(|_| {
            bad(
                name,
                format!("storage {key} is truncated ({numel} elements)"),
            )
        })?;
        storages.insert(key.as_str(), (data, numel));
    }

    let mut out = HashMap::new();
    for (tname, t) in tensors {
        let (data, numel) = storages.get(t.storage_key.as_str()).ok_or_else(|| {
            bad(
                name,
                format!("tensor {tname}: storage {} missing", t.storage_key),
            )
        })?;
        let tensor =
            materialise(&t, data, *numel).map_err(|e| bad(name, format!("tensor {tname}: {e}")))?;
        out.insert(tname, tensor);
    }
    Ok(out)
}

fn collect_tensors(
    v: &Value,
    prefix: &str,
    depth: usize,
    out: &mut Vec<(String, TensorRef)>,
    name: &str,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(bad(name, "objects nested too deeply"));
    }
    let Value::Dict(d) = v else { return Ok(()) };
    let d = d.borrow();
    let has_tensors = d.iter().any(|(_, v)| matches!(v, Value::Tensor(_)));
    for (k, v) in d.iter() {
        let Value::Str(k) = k else { continue };
        match v {
            Value::Tensor(t) => out.push((format!("{prefix}{k}"), (**t).clone())),
            Value::Dict(_) if !has_tensors && (&**k == "state_dict" || &**k == "model") => {
                collect_tensors(v, prefix, depth + 1, out, name)?
            }
            _ => {}
        }
    }
    Ok(())
}

/// Gathers a (possibly strided, offset) view out of its storage into a contiguous tensor,
/// checking that every element it addresses lies inside the storage.
fn materialise(t: &TensorRef, data: &[u8], numel: u64) -> std::result::Result<Tensor, String> {
    let (esize, dtype) =
        storage_dtype(&t.storage_class).ok_or_else(|| format!("type {}", t.storage_class))?;
    let count = t
        .size
        .iter()
        .try_fold(1u64, |a, &s| a.checked_mul(s))
        .ok_or("element count overflows")?;
    let start = t
        .base_offset
        .checked_add(t.offset)
        .ok_or("offset overflows")?;
    if count > 0 {
        let mut last = start;
        for (&s, &st) in t.size.iter().zip(&t.stride) {
            last = (s - 1)
                .checked_mul(st)
                .and_then(|x| last.checked_add(x))
                .ok_or("strides overflow")?;
        }
        if last >= numel {
            return Err(format!(
                "view reaches element {last} of a storage of {numel} elements"
            ));
        }
        // Zero strides (expanded views) could make a tiny storage claim a huge tensor.
        if count > numel.saturating_mul(64).max(1 << 20) {
            return Err(format!(
                "view of {count} elements over a storage of {numel} elements"
            ));
        }
    }
    let count = count as usize;
    let mut bytes = Vec::with_capacity(count * esize);
    let contiguous = {
        let mut expect = 1u64;
        let mut ok = true;
        for (&s, &st) in t.size.iter().zip(&t.stride).rev() {
            if s != 1 && st != expect {
                ok = false;
            }
            expect *= s;
        }
        ok
    };
    if count > 0 {
        if contiguous {
            let a = start as usize * esize;
            bytes.extend_from_slice(&data[a..a + count * esize]);
        } else {
            let mut idx = vec![0u64; t.size.len()];
            for _ in 0..count {
                let e = start + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<u64>();
                let a = e as usize * esize;
                bytes.extend_from_slice(&data[a..a + esize]);
                for d in (0..idx.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < t.size[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
    }
    let shape: Vec<usize> = t.size.iter().map(|&s| s as usize).collect();
    let dev = &Device::Cpu;
    let res = match t.storage_class.as_str() {
        "CharStorage" => {
            let v: Vec<i16> = bytes.iter().map(|&b| b as i8 as i16).collect();
            Tensor::from_vec(v, shape, dev)
        }
        "BoolStorage" => {
            let v: Vec<u8> = bytes.iter().map(|&b| (b != 0) as u8).collect();
            Tensor::from_vec(v, shape, dev)
        }
        _ => Tensor::from_raw_buffer(&bytes, dtype, &shape, dev),
    };
    res.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_sign_extend() {
        assert!(matches!(long_value(&[0xff]), Value::Int(-1)));
        assert!(matches!(long_value(&[0x01, 0x02]), Value::Int(0x0201)));
        assert!(matches!(long_value(&MAGIC), Value::BigInt(_)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x80\x02",
            b"PK\x03\x04rest",
            b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.",
            b"\x80\x02X\xff\xff\xff\xffabc",
            b"\x80\x02h\x05.",
            b"\x80\x02(((((((((((((((((((((((((((((((((((((((((((((((",
            b"\x80\x02\x8b\xff\xff\xff\x7f",
        ] {
            assert!(parse_legacy_pth(bytes, "t.pth").is_err(), "{bytes:?}");
        }
    }
}
