//! The DataStream API: what a job author writes.
//!
//! ```no_run
//! use rheo::prelude::*;
//! use std::time::Duration;
//!
//! let env = StreamEnv::new(Configuration::new());
//! env.from_collection(vec!["to be or not to be".to_string()])
//!     .flat_map(|line: String, out: &mut Collector<'_, (String, u64)>| {
//!         line.split_whitespace().for_each(|w| out.collect((w.to_string(), 1)))
//!     })
//!     .key_by(|(word, _)| word.clone())
//!     .window(TumblingProcessingTimeWindows::of(Duration::from_secs(5)))
//!     .reduce(|a, b| (a.0, a.1 + b.1))
//!     .map(|(word, count)| format!("{word} : {count}"))
//!     .print();
//! env.execute("word count").unwrap();
//! ```

pub mod env;
pub mod stream;

pub use env::StreamEnv;
pub use stream::{DataStream, KeyedStream, OutputTag, WindowedStream};
