//! Nested `trove run`s answered by the build that started them.
//!
//! A command recipe's command runs under the build's tracer, which follows every process
//! the command starts; a `trove run` inside it could neither trace its own command (a
//! process has one tracer) nor keep its reads out of the outer object's trace (so no early
//! cutoff). So the build listens on a Unix socket named by `$TROVE_NESTED_SOCKET`, and a
//! nested `trove run` asks it instead of serving itself: this process serves the object
//! (its command traced by a tracer of its own), records it as an object input of the
//! outer build (early cutoff included), and streams the bytes back. The serving thread
//! carries the outer build's chain of keys, so asking for one of them is a cycle error.
//!
//! The protocol is one JSON line each way, then the object's bytes:
//! `{"recipe": "inner", "args": [..], "force": false}` and
//! `{"ok": true, "reason": "hit disk", "dependencies": [..], "len": 3}` or
//! `{"ok": false, "error": "...", "code": 1}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use trove_fingerprint::Digest;

use super::CommandRecipe;
use crate::nested::BUILDING;
use crate::trace::Input;
use crate::{Engine, Error, Served};

/// The variable a nested `trove run` finds the socket in.
pub const SOCKET_VAR: &str = "TROVE_NESTED_SOCKET";

/// A request from a nested `trove run`.
#[derive(Serialize, Deserialize, Debug)]
pub struct NestedRequest {
    /// The recipe.
    pub recipe: String,
    /// Its extra arguments.
    pub args: Vec<String>,
    /// `--force`.
    pub force: bool,
}

/// The answer's header; the object's `len` bytes follow when `ok`.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct NestedAnswer {
    /// Whether the object follows.
    pub ok: bool,
    /// Why it was served or built (`--explain`).
    pub reason: String,
    /// Dependencies built on the way, as `what: reason` lines.
    pub dependencies: Vec<String>,
    /// The object's length.
    pub len: u64,
    /// The error, when not `ok`.
    pub error: String,
    /// The exit code to leave with, when not `ok`.
    pub code: u8,
}

/// The listening end, for the duration of one command.
pub(crate) struct Proxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    /// The listening socket (a second descriptor of it), to wake the accept loop with.
    socket: Option<UnixListener>,
    listener: Option<JoinHandle<()>>,
    inputs: Arc<Mutex<Vec<Input>>>,
}

impl Proxy {
    /// Listens at `path` for the command `recipe` is running.
    pub(crate) fn start(engine: &Engine, path: PathBuf) -> std::io::Result<Proxy> {
        let listener = UnixListener::bind(&path)?;
        let socket = listener.try_clone().ok();
        let stop = Arc::new(AtomicBool::new(false));
        let inputs = Arc::new(Mutex::new(Vec::new()));
        let chain = crate::nested::chain();
        let handle = {
            let (engine, stop, inputs) = (engine.clone(), stop.clone(), inputs.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (engine, inputs, chain) = (engine.clone(), inputs.clone(), chain.clone());
                    std::thread::spawn(move || serve_one(&engine, stream, &chain, &inputs));
                }
            })
        };
        Ok(Proxy {
            path,
            stop,
            socket,
            listener: Some(handle),
            inputs,
        })
    }

    /// Stops listening; the object inputs the nested requests were answered with.
    pub(crate) fn finish(mut self) -> Vec<Input> {
        self.shut();
        std::mem::take(&mut *self.inputs.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag. Shutting the socket down makes a
        // blocked `accept` fail at once (Linux), whatever became of its file: the
        // command may have removed it, or a cleaner of `/tmp` (waking it by connecting
        // to the path then never returned). The connection is for other systems.
        if let Some(socket) = self.socket.take() {
            // SAFETY: shutdown on a descriptor this value owns; it is closed on drop.
            unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR) };
        }
        let _ = UnixStream::connect(&self.path);
        if let Some(h) = self.listener.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shut();
    }
}

fn serve_one(engine: &Engine, stream: UnixStream, chain: &[Digest], inputs: &Mutex<Vec<Input>>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut out = stream;
    let answer = match serde_json::from_str::<NestedRequest>(&line) {
        Ok(request) => answer(engine, &request, chain, inputs),
        Err(e) => Err((format!("not a nested request: {e}"), 2)),
    };
    let _ = match answer {
        Ok(served) => {
            let header = NestedAnswer {
                ok: true,
                reason: served.reason.to_string(),
                dependencies: served
                    .dependencies
                    .iter()
                    .map(|(what, reason)| format!("{what}: {reason}"))
                    .collect(),
                len: served.value.len(),
                ..NestedAnswer::default()
            };
            write_header(&mut out, &header).and_then(|()| served.value.copy_to(&mut out).map(drop))
        }
        Err((error, code)) => write_header(
            &mut out,
            &NestedAnswer {
                error,
                code,
                ..NestedAnswer::default()
            },
        ),
    };
}

fn write_header(out: &mut impl Write, header: &NestedAnswer) -> std::io::Result<()> {
    let mut line = serde_json::to_string(header).map_err(std::io::Error::other)?;
    line.push('\n');
    out.write_all(line.as_bytes())
}

type Answer = Result<Served<crate::Blob>, (String, u8)>;

fn answer(
    engine: &Engine,
    request: &NestedRequest,
    chain: &[Digest],
    inputs: &Mutex<Vec<Input>>,
) -> Answer {
    let Some(rc) = engine.config().recipes.get(&request.recipe).cloned() else {
        return Err((
            format!("no recipe `{}` in the configuration", request.recipe),
            2,
        ));
    };
    if rc.command.is_none() {
        return Err((format!("recipe `{}` has no command", request.recipe), 2));
    }
    let recipe = CommandRecipe::new(&request.recipe, rc);
    // This thread serves on behalf of the outer build: its keys are being built here.
    BUILDING.with(|b| b.borrow_mut().extend_from_slice(chain));
    let served = if request.force {
        engine.refresh(&recipe, &request.args)
    } else {
        engine.serve(&recipe, &request.args)
    };
    BUILDING.with(|b| b.borrow_mut().clear());
    let served = served.map_err(|e| (e.to_string(), exit_code(&e)))?;
    inputs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Input::Object {
            recipe: request.recipe.clone(),
            args_display: served.args.clone(),
            args: postcard::to_allocvec(&request.args).unwrap_or_default(),
            key: served.key,
            output: served.digest,
        });
    Ok(served)
}

/// A failing command's own exit code, else 1.
fn exit_code(e: &Error) -> u8 {
    fn inner(e: &Error) -> Option<i32> {
        match e {
            Error::Build {
                source: crate::BuildError::CommandFailed { code, .. },
                ..
            } => *code,
            Error::Build {
                source: crate::BuildError::Dependency(d),
                ..
            } => inner(d),
            Error::Shared(s) => inner(s),
            _ => None,
        }
    }
    inner(e)
        .and_then(|c| u8::try_from(c).ok())
        .filter(|c| *c != 0)
        .unwrap_or(1)
}

/// The client side, for a nested `trove run`: asks the build named by
/// `$TROVE_NESTED_SOCKET`, writes the object to `out`, and returns the answer's header.
/// `None` when no build is listening (the caller then serves the request itself).
pub fn ask(
    socket: &Path,
    request: &NestedRequest,
    out: &mut impl Write,
) -> Option<std::io::Result<NestedAnswer>> {
    let stream = UnixStream::connect(socket).ok()?;
    Some((|| {
        let mut line = serde_json::to_string(request).map_err(std::io::Error::other)?;
        line.push('\n');
        (&stream).write_all(line.as_bytes())?;
        let mut reader = BufReader::new(&stream);
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let answer: NestedAnswer = serde_json::from_str(&header).map_err(std::io::Error::other)?;
        if answer.ok {
            let copied = std::io::copy(&mut reader.take(answer.len), out)?;
            if copied != answer.len {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the build that started this run closed before the whole object",
                ));
            }
        }
        Ok(answer)
    })())
}
