// Opens an HTML file in a real headless Chromium (Debian package `chromium`) and reports what a
// reader would have seen: whether the page's own render check passed, every console error,
// uncaught exception or failed load, and the DOM after the `load` event.
//
// Chromium is driven through the DevTools protocol over a pipe (--remote-debugging-pipe), not by
// scraping `--enable-logging=stderr`: the stderr log prints every console message at INFO level,
// so console.error could not be told from console.log there.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace attnlab::test {

struct PageCheck {
    bool ran = false;           // Chromium started, the page loaded, the DOM was read back
    std::string rendered;       // document.documentElement.dataset.rendered after load ("" if unset)
    // console.error / console.assert calls, uncaught exceptions and error-level browser log
    // entries (failed resource loads, Content-Security-Policy violations), one line each.
    std::vector<std::string> console_errors;
    std::string dom;            // "<!DOCTYPE html>" + the serialized document after load
    std::string script_result;  // String(value) of `after_load_js`, or "exception: ..."
    std::string error;          // why ran is false, or why the screenshot was not written
};

// The Chromium executable: $ATTNLAB_CHROMIUM if set, else the first of chromium,
// chromium-browser, google-chrome on PATH; empty when none is installed.
std::filesystem::path chromium_path();

// Loads `html` (a local file) in a fresh headless Chromium with a throw-away profile and a 1280x1800
// viewport, waits for `load` (60 s at most, then the browser is killed), then evaluates
// `after_load_js` if given (a JavaScript expression, awaited if it is a promise; it runs through the
// DevTools protocol, so the page's Content-Security-Policy does not block it), reads the DOM back
// and, if `screenshot` is not empty, writes a PNG of the viewport there.
PageCheck check_page_in_chromium(const std::filesystem::path& html,
                                 const std::filesystem::path& screenshot = {},
                                 const std::string& after_load_js = {});

}  // namespace attnlab::test
