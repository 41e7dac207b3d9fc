//! Version 2.0.0 of the trivial `echo` provider, for the host's hot-swap
//! tests: it answers "echo v2" to every request. The code is shared with the
//! other version (`../echo/echo.rs`) so only the constants below differ.

/// The version `info` reports, so a test can tell which file is loaded.
const VERSION: &str = "2.0.0";

/// The text every transcription answers, so a test can tell which version served it.
const TEXT: &str = "echo v2";

include!("../../echo/echo.rs");
