// Headless Chromium driven through the DevTools protocol (CDP) over --remote-debugging-pipe:
// Chromium reads '\0'-terminated JSON commands on fd 3 and writes replies and events on fd 4.
// No shell is involved (fork/execv with an argument vector), the profile is a fresh temp dir,
// and every wait has a deadline after which the whole process group is killed.
#include "browser.h"

#include "test_support.h"

#include <nlohmann/json.hpp>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <stdexcept>
#include <thread>

namespace attnlab::test {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kPageTimeout = std::chrono::seconds(60);

struct BrowserFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string log_tail(const fs::path& log) {
    std::ifstream in(log, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.size() > 1500 ? text.substr(text.size() - 1500) : text;
}

std::vector<uint8_t> decode_base64(const std::string& text) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::vector<uint8_t> out;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : text) {
        int v = value(c);
        if (v < 0) continue;  // '=' padding and whitespace
        acc = (acc << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(uint8_t((acc >> bits) & 0xff));
        }
    }
    return out;
}

// A running Chromium and its CDP pipe. The destructor closes the browser (politely, then by
// SIGKILL to its process group) so no test leaves processes behind.
class Browser {
public:
    Browser(const fs::path& exe, const fs::path& profile, const fs::path& log) : log_(log) {
        int to_chrome[2], from_chrome[2];
        // Socket pairs rather than pipes: send(MSG_NOSIGNAL) cannot raise SIGPIPE in the test
        // process if Chromium dies.
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, to_chrome) != 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, from_chrome) != 0)
            throw BrowserFailure("socketpair failed");
        std::vector<std::string> args = {
            exe.string(),
            "--headless",
            "--no-sandbox",  // tests may run as root, where the sandbox refuses to start
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--user-data-dir=" + profile.string(),
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--mute-audio",
            "--window-size=1280,1800",
            "about:blank",
        };
        pid_ = fork();
        if (pid_ < 0) throw BrowserFailure("fork failed");
        if (pid_ == 0) {
            setpgid(0, 0);  // its own group, so the renderer/GPU children can be killed with it
            // fds 3 and 4 may be taken by the socket ends themselves: move them above first.
            int in_fd = fcntl(to_chrome[1], F_DUPFD, 10);
            int out_fd = fcntl(from_chrome[1], F_DUPFD, 10);
            int log_fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            int null_fd = ::open("/dev/null", O_RDONLY);
            if (in_fd < 0 || out_fd < 0 || log_fd < 0 || null_fd < 0) _exit(126);
            dup2(null_fd, 0);
            dup2(log_fd, 1);
            dup2(log_fd, 2);
            dup2(in_fd, 3);  // dup2 clears FD_CLOEXEC on the new descriptors
            dup2(out_fd, 4);
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        setpgid(pid_, pid_);  // also from the parent, whichever runs first
        ::close(to_chrome[1]);
        ::close(from_chrome[1]);
        write_fd_ = to_chrome[0];
        read_fd_ = from_chrome[0];
        deadline_ = Clock::now() + kPageTimeout;
    }

    ~Browser() {
        if (pid_ > 0) {
            try {
                send("Browser.close", json::object(), "");
            } catch (...) {
            }
            // Wait up to 5 s without reaping (WNOWAIT): while the leader is an unreaped zombie its
            // process group id cannot be reused, so the kill below only reaches our processes.
            for (int i = 0; i < 50; ++i) {
                siginfo_t info{};
                if (waitid(P_PID, id_t(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid_)
                    break;
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
            kill(-pid_, SIGKILL);  // stragglers of the group (or the browser itself)
            waitpid(pid_, nullptr, 0);
        }
        if (write_fd_ >= 0) ::close(write_fd_);
        if (read_fd_ >= 0) ::close(read_fd_);
    }

    Browser(const Browser&) = delete;
    Browser& operator=(const Browser&) = delete;

    // Sends a command and returns its result, handling the events that arrive meanwhile.
    json call(const std::string& method, const json& params, const std::string& session) {
        int id = send(method, params, session);
        for (;;) {
            json msg = next_message();
            if (msg.contains("id") && msg["id"] == id) {
                if (msg.contains("error"))
                    throw BrowserFailure(method + " failed: " + msg["error"].dump());
                return msg.value("result", json::object());
            }
            on_event(msg);
        }
    }

    // Waits for the `load` event of the document that navigation `loader_id` committed; the
    // about:blank the target started with fires its own `load`, possibly after Page.enable.
    void wait_for_load(const std::string& loader_id) {
        while (!loaded_loaders_.count(loader_id)) on_event(next_message());
    }

    std::vector<std::string> console_errors;

private:
    int send(const std::string& method, const json& params, const std::string& session) {
        json msg = {{"id", ++last_id_}, {"method", method}, {"params", params}};
        if (!session.empty()) msg["sessionId"] = session;
        std::string bytes = msg.dump();
        bytes.push_back('\0');
        size_t done = 0;
        while (done < bytes.size()) {
            ssize_t n = ::send(write_fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
            if (n <= 0) throw BrowserFailure("writing to Chromium failed (it exited?)");
            done += size_t(n);
        }
        return last_id_;
    }

    json next_message() {
        for (;;) {
            size_t end = buffer_.find('\0');
            if (end != std::string::npos) {
                std::string text = buffer_.substr(0, end);
                buffer_.erase(0, end + 1);
                return json::parse(text);
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
            if (left.count() <= 0) throw BrowserFailure("timed out after 60 s");
            pollfd pfd{read_fd_, POLLIN, 0};
            int ready = poll(&pfd, 1, int(left.count()));
            if (ready < 0 && errno == EINTR) continue;
            if (ready <= 0) throw BrowserFailure("timed out after 60 s");
            char chunk[65536];
            ssize_t n = ::read(read_fd_, chunk, sizeof chunk);
            if (n <= 0) throw BrowserFailure("Chromium closed the DevTools pipe (it exited?)");
            buffer_.append(chunk, size_t(n));
        }
    }

    static std::string remote_object_text(const json& obj) {
        if (obj.contains("value")) {
            const json& v = obj["value"];
            return v.is_string() ? v.get<std::string>() : v.dump();
        }
        return obj.value("description", obj.value("type", std::string("?")));
    }

    void on_event(const json& msg) {
        std::string method = msg.value("method", "");
        const json params = msg.value("params", json::object());
        if (method == "Page.frameNavigated") {
            const json frame = params.value("frame", json::object());
            if (!frame.contains("parentId")) committed_loader_ = frame.value("loaderId", "");
        } else if (method == "Page.loadEventFired") {
            loaded_loaders_.insert(committed_loader_);
        } else if (method == "Runtime.consoleAPICalled") {
            std::string type = params.value("type", "");
            if (type != "error" && type != "assert") return;
            std::string text = "console." + type + ":";
            for (const auto& arg : params.value("args", json::array())) text += " " + remote_object_text(arg);
            console_errors.push_back(text);
        } else if (method == "Runtime.exceptionThrown") {
            const json details = params.value("exceptionDetails", json::object());
            std::string text = details.value("text", "exception");
            if (details.contains("exception")) text += " " + remote_object_text(details["exception"]);
            console_errors.push_back(text);
        } else if (method == "Log.entryAdded") {
            const json entry = params.value("entry", json::object());
            if (entry.value("level", "") != "error") return;
            std::string text = "log(" + entry.value("source", "?") + "): " + entry.value("text", "");
            if (entry.contains("url")) text += " [" + entry["url"].get<std::string>() + "]";
            console_errors.push_back(text);
        }
    }

    fs::path log_;
    pid_t pid_ = -1;
    int write_fd_ = -1, read_fd_ = -1;
    int last_id_ = 0;
    std::string buffer_;
    std::string committed_loader_;         // loaderId of the main frame's current document
    std::set<std::string> loaded_loaders_;  // documents whose `load` event has fired
    Clock::time_point deadline_;
};

std::string file_url(const fs::path& file) {
    // Percent-encode everything but unreserved characters and '/', so spaces, '#', '?' and
    // non-ASCII names survive.
    std::string url = "file://";
    for (unsigned char c : fs::absolute(file).string()) {
        if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
            url.push_back(char(c));
        } else {
            static const char* hex = "0123456789ABCDEF";
            url += '%';
            url += hex[c >> 4];
            url += hex[c & 15];
        }
    }
    return url;
}

}  // namespace

fs::path chromium_path() {
    if (const char* env = std::getenv("ATTNLAB_CHROMIUM"); env && *env) return fs::path(env);
    const char* path_env = std::getenv("PATH");
    std::string path = path_env ? path_env : "/usr/bin:/bin";
    for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
        size_t start = 0;
        while (start <= path.size()) {
            size_t end = path.find(':', start);
            if (end == std::string::npos) end = path.size();
            fs::path candidate = fs::path(path.substr(start, end - start)) / name;
            if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
            start = end + 1;
        }
    }
    return {};
}

PageCheck check_page_in_chromium(const fs::path& html, const fs::path& screenshot,
                                 const std::string& after_load_js) {
    PageCheck check;
    fs::path exe = chromium_path();
    if (exe.empty()) {
        check.error = "Chromium not found (install the Debian package `chromium`, see scripts/setup.sh)";
        return check;
    }
    if (!fs::is_regular_file(html)) {
        check.error = "no such file: " + html.string();
        return check;
    }
    TempDir tmp;
    fs::path log = tmp / "chromium.log";
    try {
        Browser browser(exe, tmp / "profile", log);
        json target = browser.call("Target.createTarget", {{"url", "about:blank"}}, "");
        json attached = browser.call(
            "Target.attachToTarget", {{"targetId", target["targetId"]}, {"flatten", true}}, "");
        std::string session = attached["sessionId"].get<std::string>();
        for (const char* domain : {"Page.enable", "Runtime.enable", "Log.enable"})
            browser.call(domain, json::object(), session);
        // The viewport, exactly (--window-size counts the invisible window frame).
        browser.call("Emulation.setDeviceMetricsOverride",
                     {{"width", 1280}, {"height", 1800}, {"deviceScaleFactor", 1}, {"mobile", false}},
                     session);
        json nav = browser.call("Page.navigate", {{"url", file_url(html)}}, session);
        if (nav.contains("errorText") && !nav["errorText"].get<std::string>().empty())
            throw BrowserFailure("navigation failed: " + nav["errorText"].get<std::string>());
        if (nav.value("loaderId", "").empty()) throw BrowserFailure("navigation gave no loaderId: " + nav.dump());
        browser.wait_for_load(nav["loaderId"].get<std::string>());
        // Read back after a short pause so that work queued by `load` handlers (and any error it
        // raises) has happened.
        const char* read_back = R"JS(
            new Promise(done => setTimeout(() => done(JSON.stringify({
                rendered: document.documentElement.dataset.rendered || "",
                dom: (document.doctype ? "<!DOCTYPE html>\n" : "") + document.documentElement.outerHTML
            })), 100)))JS";
        if (!after_load_js.empty()) {
            json probe = browser.call("Runtime.evaluate",
                                      {{"expression", "(async () => { await new Promise(r => setTimeout(r, 100)); return String(await (" +
                                                         after_load_js + ")); })()"},
                                       {"awaitPromise", true},
                                       {"returnByValue", true}},
                                      session);
            if (probe.contains("exceptionDetails")) {
                const json& details = probe["exceptionDetails"];
                check.script_result = "exception: " + details.value("text", std::string()) + " " +
                                      (details.contains("exception")
                                           ? details["exception"].value("description", std::string())
                                           : std::string());
            } else {
                check.script_result = probe["result"].value("value", std::string());
            }
        }
        json eval = browser.call(
            "Runtime.evaluate", {{"expression", read_back}, {"awaitPromise", true}, {"returnByValue", true}},
            session);
        if (eval.contains("exceptionDetails")) throw BrowserFailure("reading the DOM failed: " + eval.dump());
        json state = json::parse(eval["result"]["value"].get<std::string>());
        check.rendered = state["rendered"].get<std::string>();
        check.dom = state["dom"].get<std::string>();
        check.ran = true;
        if (!screenshot.empty()) {
            json shot = browser.call("Page.captureScreenshot", {{"format", "png"}}, session);
            std::vector<uint8_t> png = decode_base64(shot["data"].get<std::string>());
            std::ofstream out(screenshot, std::ios::binary);
            out.write(reinterpret_cast<const char*>(png.data()), std::streamsize(png.size()));
            if (!out) check.error = "cannot write screenshot " + screenshot.string();
        }
        check.console_errors = browser.console_errors;
    } catch (const std::exception& e) {
        check.ran = false;
        check.error = std::string("[browser] ") + e.what() + "; Chromium log tail:\n" + log_tail(log);
    }
    return check;
}

}  // namespace attnlab::test
