//! The components shipped inside the binary.
//!
//! The build script compiles `plugins/*` for `wasm32-wasip2` and embeds the
//! results here, so one binary carries every shipped plugin and a fresh data
//! directory serves them all. A file of the same name in the plugin
//! directory replaces the built-in version.

include!(concat!(env!("OUT_DIR"), "/built_in_plugins.rs"));

/// Shipped plugins: (plugin name, component bytes).
pub fn all() -> &'static [(&'static str, &'static [u8])] {
    BUILT_IN
}
