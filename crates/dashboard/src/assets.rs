//! The pages' assets, compiled into the binary: no CDN, no build step.
//!
//! One page (`page.html`) serves every path; its script (`app.js`, hand-written, no
//! framework) draws the view the path names from the event stream, with canvas and
//! plain DOM. The same script draws performance reports from the data embedded in
//! them.

/// The HTML of every page.
pub(crate) const PAGE: &str = include_str!("../assets/page.html");
/// The script.
pub(crate) const JS: &str = include_str!("../assets/app.js");
/// The style sheet.
pub(crate) const CSS: &str = include_str!("../assets/app.css");

/// An asset by name: (content type, body).
pub(crate) fn get(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "app.js" => Some(("text/javascript; charset=utf-8", JS)),
        "app.css" => Some(("text/css; charset=utf-8", CSS)),
        _ => None,
    }
}
