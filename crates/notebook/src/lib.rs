//! `jmcp-notebook`: lossless nbformat v4 notebook documents for jupyter-mcp.
//!
//! - [`Notebook::parse`] reads `.ipynb` bytes (upgrading nbformat 4.0-4.4 to 4.5 by adding
//!   cell ids) and keeps every key it does not model in `extra` maps;
//! - [`Notebook::to_json`] writes exactly the bytes Python's `nbformat.write` would;
//! - [`io`] reads and atomically writes files, and [`io::save`] merges with changes made on
//!   disk meanwhile using [`merge::merge`] (three-way, by cell id).
//!
//! The reference for all behaviour is Python nbformat 5.11 (`nbformat/v4/rwbase.py`,
//! `nbjson.py`, `convert.py`, `validator.py`).

#![warn(missing_docs)]

mod document;
mod error;
pub mod io;
pub mod limit;
mod lines;
pub mod merge;
pub mod nonfinite;
mod parse;
mod pyjson;

pub use document::{Cell, CellType, Loaded, Notebook};
pub use error::NotebookError;
pub use io::{
    create_new, create_new_at, read_notebook, read_notebook_at, save, save_at, stamp_of,
    write_atomic, write_atomic_at, FileStamp, Location, SaveOutcome,
};
pub use merge::merge;
