//! The console at `/`: its headers, `console.enabled`, and the page itself in
//! a real headless Chromium (driven over WebDriver by chromedriver), behind
//! the project's nginx under a path prefix.
//!
//! Every browser state is saved as a screenshot under
//! `target/tmp/console/` (desktop and phone width, light and dark).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use ssehub::config::SubscribeAuth;

use crate::browser::ChromeDriver;
use crate::nginx::{Nginx, Variant};
use crate::support::helpers::{assert_problem, spawn_app, spawn_app_with};
use crate::support::jwt::{Minter, SECRET, claims, now};

/// Where the screenshots go: Cargo's scratch directory for integration tests.
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A screen the console is looked at on.
#[derive(Clone, Copy)]
enum Screen {
    Desktop,
    Phone,
}

/// What the tests need from WebDriver beyond `browser.rs`'s basics.
impl ChromeDriver {
    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().unwrap())
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                "POST",
                &self.session_path("/element"),
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.call(
            "POST",
            &self.session_path(&format!("/element/{element}/click")),
            json!({}),
        )
        .await;
    }

    /// Replaces a field's text by typing, as a user would.
    async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.call(
            "POST",
            &self.session_path(&format!("/element/{element}/clear")),
            json!({}),
        )
        .await;
        if !text.is_empty() {
            self.call(
                "POST",
                &self.session_path(&format!("/element/{element}/value")),
                json!({ "text": text }),
            )
            .await;
        }
    }

    /// Presses keys (WebDriver key codes, e.g. `\u{E004}` for Tab) on
    /// whatever has the focus.
    async fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|key| {
                [
                    json!({"type": "keyDown", "value": key.to_string()}),
                    json!({"type": "keyUp", "value": key.to_string()}),
                ]
            })
            .collect();
        self.call(
            "POST",
            &self.session_path("/actions"),
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    /// Runs a Chrome DevTools Protocol command.
    async fn devtools(&self, command: &str, params: Value) -> Value {
        self.call(
            "POST",
            &self.session_path("/goog/cdp/execute"),
            json!({"cmd": command, "params": params}),
        )
        .await
    }

    async fn show_on(&self, screen: Screen, dark: bool) {
        let (width, height, scale, mobile) = match screen {
            Screen::Desktop => (1280, 900, 1, false),
            Screen::Phone => (390, 844, 2, true),
        };
        self.devtools(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile}),
        )
        .await;
        let scheme = if dark { "dark" } else { "light" };
        self.devtools(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }

    /// Saves what the browser shows as `NAME.png`: the window on a desktop,
    /// the whole page on a phone (where it scrolls).
    async fn screenshot(&self, name: &str, screen: Screen) -> PathBuf {
        let params = match screen {
            Screen::Desktop => json!({"format": "png"}),
            Screen::Phone => {
                let layout = self.devtools("Page.getLayoutMetrics", json!({})).await;
                let size = &layout["cssContentSize"];
                json!({"format": "png", "captureBeyondViewport": true, "clip": {
                    "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1,
                }})
            }
        };
        let shot = self.devtools("Page.captureScreenshot", params).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The browser's console and network log since the last call
    /// (chromedriver keeps warnings and errors).
    async fn browser_log(&self) -> Vec<Value> {
        self.call(
            "POST",
            &self.session_path("/se/log"),
            json!({"type": "browser"}),
        )
        .await
        .as_array()
        .unwrap()
        .clone()
    }

    /// Sets a field's value at once (for long values such as tokens).
    async fn set_value(&self, css: &str, value: &str) {
        self.eval(&format!(
            "(() => {{ document.querySelector({}).value = {}; return true; }})()",
            serde_json::to_string(css).unwrap(),
            serde_json::to_string(value).unwrap()
        ))
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let expression = format!(
            "document.querySelector({}).textContent",
            serde_json::to_string(css).unwrap()
        );
        self.eval(&expression)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Waits until the element's text contains `needle`; returns the text.
    async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let expression = format!(
            "document.querySelector({})?.textContent ?? ''",
            serde_json::to_string(css).unwrap()
        );
        let value = self
            .wait_for(&expression, |text| {
                text.as_str().is_some_and(|text| text.contains(needle))
            })
            .await;
        value.as_str().unwrap().to_owned()
    }

    /// The ids of the events in the log, in order.
    async fn logged_ids(&self) -> Vec<String> {
        let ids = self
            .eval("[...document.querySelectorAll('#log li.event')].map((li) => li.dataset.id)")
            .await;
        serde_json::from_value(ids).unwrap()
    }

    async fn wait_for_events(&self, count: usize) -> Vec<String> {
        self.wait_for("document.querySelectorAll('#log li.event').length", |n| {
            n.as_u64() >= Some(count as u64)
        })
        .await;
        self.logged_ids().await
    }

    async fn connection_state(&self) -> String {
        self.eval("document.querySelector('#connection').dataset.state")
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn wait_for_state(&self, state: &str) {
        self.wait_for(
            "document.querySelector('#connection').dataset.state",
            |value| value == state,
        )
        .await;
    }

    /// Publishes through the page's form.
    async fn publish_in_page(&self, topic: &str, data: &str, format: &str) {
        self.type_into("#publish-form [name=topic]", topic).await;
        self.type_into("#publish-form [name=data]", data).await;
        self.eval(&format!(
            "(() => {{ document.querySelector('#publish-form [name=format]').value = '{format}'; return true; }})()"
        ))
        .await;
        // A result from an earlier publish must not pass for this one.
        self.eval("(() => { document.querySelector('#publish-result').replaceChildren(); return true; })()")
            .await;
        self.click("#send").await;
        self.wait_for(
            "document.querySelector('#publish-result').textContent",
            |text| !text.as_str().unwrap_or("").is_empty(),
        )
        .await;
    }
}

/// Log entries other than network errors for the requests in `expected`.
fn unexpected(log: &[Value], expected: &[&str]) -> Vec<Value> {
    log.iter()
        .filter(|entry| {
            let message = entry["message"].as_str().unwrap_or("");
            !(entry["source"] == "network" && expected.iter().any(|url| message.contains(url)))
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_console_page_has_a_content_security_policy_and_no_inline_script() {
    let app = spawn_app().await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    // Every <script> names a file; none has a body (inline script).
    for (start, _) in html.match_indices("<script") {
        let tag = &html[start..start + html[start..].find("</script>").unwrap()];
        assert!(tag.contains("src=\"console/"), "{tag}");
        assert!(tag.ends_with('>'), "inline script in {tag}");
    }
    assert!(!html.contains(" style=\""), "an inline style attribute");
    for (start, _) in html.match_indices(" on") {
        let name: String = html[start + 1..]
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        assert!(
            !html[start + 1 + name.len()..].starts_with('='),
            "an inline event handler: {name}"
        );
    }

    let script = app.get("/console/console.js").await;
    assert_eq!(script.status(), 200);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = script.headers()["etag"].to_str().unwrap().to_owned();
    let source = script.text().await.unwrap();
    assert!(!source.contains("innerHTML"), "the script uses innerHTML");
    assert!(
        !source.contains("localStorage") && !source.contains("sessionStorage"),
        "the script stores something beyond the tab"
    );
    let again = app
        .client
        .get(app.url("/console/console.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304, "a current copy is not sent again");

    assert_problem(app.get("/console/nothing.js").await, 404).await;
}

/// How GitHub turns a Markdown heading into its anchor.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of the headings of a Markdown file, outside code blocks.
fn heading_anchors(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut anchors = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            anchors.push(github_anchor(line.trim_start_matches('#')));
        }
    }
    anchors
}

/// The console links the book's pages by their GitHub URL
/// (`…/blob/main/docs/src/concepts.md#history-and-resume`): each must be a
/// page of the book in this checkout, and its anchor one of its headings.
#[tokio::test]
async fn every_docs_page_the_console_links_exists() {
    const BOOK: &str = "https://github.com/ssehub/ssehub/blob/main/";
    let app = spawn_app().await;
    let page = app.get("/").await.text().await.unwrap();
    let mut linked = 0;
    for (start, _) in page.match_indices(BOOK) {
        let rest = &page[start + BOOK.len()..];
        let link = &rest[..rest.find('"').unwrap()];
        let (path, anchor) = link.split_once('#').unwrap_or((link, ""));
        assert!(
            path.starts_with("docs/src/") && path.ends_with(".md"),
            "the page links {link}, which is no page of the book"
        );
        let markdown =
            std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path))
                .unwrap_or_else(|error| {
                    panic!("the page links {path}, which can't be read: {error}")
                });
        if !anchor.is_empty() {
            assert!(
                heading_anchors(&markdown)
                    .iter()
                    .any(|known| known == anchor),
                "the page links {path}#{anchor}, which is no heading of {path}"
            );
        }
        linked += 1;
    }
    assert!(linked >= 2, "{linked} pages of the book linked");
}

#[tokio::test]
async fn console_enabled_false_turns_the_page_off_but_not_the_api() {
    let app = spawn_app_with(|c| c.console.enabled = false).await;
    let page = assert_problem(app.get("/").await, 404).await;
    assert!(
        page["detail"].as_str().unwrap().contains("console.enabled"),
        "{page}"
    );
    assert_problem(app.get("/console/console.js").await, 404).await;
    assert_eq!(app.get("/v1/stats").await.status(), 200);
}

/// The hub behind nginx, with the console under `/ssehub/`.
struct Rig {
    app: crate::support::helpers::TestApp,
    nginx: Nginx,
    browser: ChromeDriver,
}

async fn rig(configure: impl FnOnce(&mut ssehub::config::Config)) -> Rig {
    let app = spawn_app_with(configure).await;
    let nginx = Nginx::start(
        app.addr,
        Variant {
            path_prefix: true,
            ..Variant::default()
        },
    );
    let browser = ChromeDriver::start().await;
    browser.show_on(Screen::Desktop, false).await;
    browser.open(&nginx.url("/ssehub/")).await;
    // The hub panel has read /v1/stats through the prefix.
    browser
        .wait_for_text("[data-stat=backplane]", "memory")
        .await;
    assert_eq!(browser.text("[data-stat=available]").await, "available");
    assert_eq!(browser.text("[data-stat=phase]").await, "serving");
    Rig {
        app,
        nginx,
        browser,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_subscribes_publishes_resumes_and_shows_gaps_under_a_path_prefix() {
    // A small history, so that an old id is a gap; a short retry, so the
    // resume after a drop comes soon.
    let Rig {
        app,
        nginx,
        browser,
    } = rig(|c| {
        c.history.size = 4;
        c.stream.retry = Duration::from_millis(1500);
    })
    .await;
    let log = browser.browser_log().await;
    assert!(log.is_empty(), "the page logged on load: {log:#?}");
    browser
        .screenshot("01-loaded-desktop-light", Screen::Desktop)
        .await;

    // Subscribe through the page.
    browser
        .type_into("#subscribe-form [name=topics]", "demo, news")
        .await;
    browser.click("#connect").await;
    browser.wait_for_state("open").await;
    assert!(
        browser
            .text("#connection-text")
            .await
            .contains("retry 1500 ms"),
        "the stream's retry is shown"
    );

    // Publish through the page: JSON is pretty-printed.
    browser
        .publish_in_page("demo", r#"{"order": 42, "status": "shipped"}"#, "json")
        .await;
    assert!(
        browser
            .text("#publish-result")
            .await
            .contains("202 Accepted"),
        "{}",
        browser.text("#publish-result").await
    );
    browser.wait_for_events(1).await;
    assert_eq!(
        browser.text("#log li.event:last-child pre.data").await,
        "{\n  \"order\": 42,\n  \"status\": \"shipped\"\n}"
    );

    // Untrusted data is text, never markup.
    let payload = "<img src=x onerror=alert(1)>";
    browser.publish_in_page("news", payload, "text").await;
    browser.wait_for_events(2).await;
    assert_eq!(
        browser.text("#log li.event:last-child pre.data").await,
        payload
    );
    assert_eq!(
        browser
            .eval("document.querySelectorAll('main img').length")
            .await,
        0,
        "the payload became an element"
    );

    // A batch, and the hub panel's figures move.
    browser
        .click("#publish-form [name=mode][value=batch]")
        .await;
    browser.click("#send").await;
    browser
        .wait_for_text("#publish-result", "202 Accepted")
        .await;
    browser
        .click("#publish-form [name=mode][value=single]")
        .await;
    browser.wait_for_events(4).await;
    browser
        .wait_for_text("[data-stat=events_accepted]", "4 total")
        .await;
    browser
        .wait_for_text("[data-stat=deliveries]", "4 total")
        .await;
    assert_eq!(browser.text("[data-stat=subscribers]").await, "1");
    assert_eq!(browser.text("[data-stat=live_topics]").await, "2");

    // A refused publish is shown as its problem document, readably.
    browser.publish_in_page("not a topic!", "1", "json").await;
    let refusal = browser.text("#publish-result").await;
    assert!(refusal.contains("400 Bad Request"), "{refusal}");
    assert!(refusal.contains("topic"), "{refusal}");
    assert!(
        refusal.contains("urn:ssehub:problem:invalid-topic"),
        "{refusal}"
    );
    browser
        .wait_for_text("[data-stat=requests_rejected]", "1")
        .await;
    browser
        .screenshot("02-live-desktop-light", Screen::Desktop)
        .await;

    // Drop the connection; what is published meanwhile arrives on resume.
    let mut published = browser.logged_ids().await;
    browser.click("#drop").await;
    browser.wait_for_state("reconnecting").await;
    browser
        .screenshot("03-reconnecting-desktop-light", Screen::Desktop)
        .await;
    for n in 0..2 {
        published.push(app.publish("demo", json!(format!("while away {n}"))).await);
    }
    assert_eq!(browser.connection_state().await, "reconnecting");
    browser.wait_for_state("open").await;
    let after_resume = browser.wait_for_events(published.len()).await;
    assert_eq!(after_resume, published, "every event once, in order");
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#log li.gap').length")
            .await,
        0,
        "no gap on a covered resume"
    );
    assert!(
        browser.text("#log").await.contains(&format!(
            "Connected; resuming after {}",
            published[published.len() - 3]
        )),
        "the resume is shown with the id it resumed from"
    );

    // Resume from an id that history no longer holds: a gap, shown as such.
    browser.click("#disconnect").await;
    browser.wait_for_state("closed").await;
    // More events than history holds: the ones right after the first id
    // are gone.
    for n in 0..4 {
        app.publish("demo", json!(format!("later {n}"))).await;
    }
    browser
        .type_into("#subscribe-form [name=resume]", &published[0])
        .await;
    browser
        .type_into("#subscribe-form [name=topics]", "demo")
        .await;
    browser.click("#connect").await;
    browser.wait_for_state("open").await;
    let gap = browser
        .wait_for_text("#log li.gap", "history_exceeded")
        .await;
    assert!(gap.contains(&format!("after {}", published[0])), "{gap}");
    assert!(gap.contains("resumes at"), "{gap}");
    assert_eq!(
        browser
            .eval("document.querySelector('#log li.gap').nextElementSibling.className")
            .await,
        "event",
        "the gap comes before the replayed events"
    );
    browser.wait_for_text("[data-stat=gap_frames]", "1").await;
    // Live events follow the replay; a typed event shows its type.
    browser
        .type_into("#publish-form [name=event]", "order")
        .await;
    browser
        .publish_in_page("demo", r#"{"order": 43, "status": "packed"}"#, "json")
        .await;
    browser
        .wait_for_text("#log li.event:last-child", "\"packed\"")
        .await;
    assert_eq!(
        browser.text("#log li.event:last-child .type").await,
        "order"
    );

    // The resume, its gap and what followed in view (the log follows its end).
    browser
        .eval(
            "(() => { const log = document.querySelector('#log'); \
             const start = document.querySelector('#log li.gap').previousElementSibling; \
             log.scrollTop += start.getBoundingClientRect().top - log.getBoundingClientRect().top; \
             return true; })()",
        )
        .await;
    for (name, screen, dark) in [
        ("04-gap-desktop-light", Screen::Desktop, false),
        ("05-gap-desktop-dark", Screen::Desktop, true),
        ("06-gap-phone-light", Screen::Phone, false),
        ("07-gap-phone-dark", Screen::Phone, true),
    ] {
        browser.show_on(screen, dark).await;
        let path = browser.screenshot(name, screen).await;
        println!("screenshot: {}", path.display());
    }
    // On a phone, nothing is wider than the screen.
    let overflow = browser
        .eval("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        .await;
    assert_eq!(overflow, 0, "the page scrolls sideways at phone width");

    browser.click("#clear").await;
    assert_eq!(
        browser
            .eval("document.querySelector('#log').childElementCount")
            .await,
        0
    );

    // The only errors the browser logged are the deliberate 400s.
    let log = browser.browser_log().await;
    let left = unexpected(&log, &["/ssehub/v1/topics/not%20a%20topic!/events"]);
    assert!(left.is_empty(), "unexpected browser log: {left:#?}");
    drop(nginx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_from_the_keyboard_alone() {
    let Rig {
        app: _app,
        nginx: _nginx,
        browser,
    } = rig(|_| {}).await;
    const TAB: &str = "\u{E004}";
    const ENTER: &str = "\u{E007}";

    // Tab from the top of the page: the order follows the page, and every
    // control of the subscribe and publish panels is reached.
    let mut order = Vec::new();
    for _ in 0..30 {
        browser.press(TAB).await;
        let focused = browser
            .eval(
                "(() => { const e = document.activeElement; \
                 return e.id || e.name || e.textContent.trim(); })()",
            )
            .await;
        order.push(focused.as_str().unwrap().to_owned());
    }
    let position = |name: &str| {
        order
            .iter()
            .position(|focused| focused == name)
            .unwrap_or_else(|| panic!("{name} is never focused: {order:?}"))
    };
    assert!(position("API docs") < position("topics"));
    assert!(position("topics") < position("connect"));
    assert!(position("connect") < position("topic"));
    assert!(position("topic") < position("data"));
    assert!(position("data") < position("send"));

    // Connect: focus the topics field, press Enter.
    browser.click("#subscribe-form [name=topics]").await;
    browser.press(ENTER).await;
    browser.wait_for_state("open").await;
    // Publish: Tab to the button, press Enter.
    browser.click("#publish-form [name=key]").await;
    browser.press(TAB).await;
    assert_eq!(browser.eval("document.activeElement.id").await, "send");
    browser.press(ENTER).await;
    browser.wait_for_events(1).await;
    assert_eq!(
        browser.text("#log li.event pre.data").await,
        "{\n  \"hello\": \"world\"\n}"
    );
    // The focus is visible: an outline on the focused control.
    let outline = browser
        .eval("getComputedStyle(document.activeElement).outlineStyle")
        .await;
    assert_eq!(outline, "solid", "no visible focus on the publish button");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_sends_keys_and_tokens_and_shows_a_token_expiry() {
    const KEY: &str = "static-publisher-key-for-the-console";
    let Rig {
        app,
        nginx: _nginx,
        browser,
    } = rig(|c| {
        c.auth.jwt.secret = Some(SECRET.to_owned());
        c.auth.publish_keys = vec![KEY.to_owned()];
        c.auth.subscribe = SubscribeAuth::Jwt;
    })
    .await;
    let minter = Minter::hs256(SECRET);

    // Without a key the publish is refused, readably; with it, accepted.
    browser.publish_in_page("user.42", "1", "json").await;
    let refusal = browser.text("#publish-result").await;
    assert!(refusal.contains("401 Unauthorized"), "{refusal}");
    browser.type_into("#publish-form [name=key]", KEY).await;
    browser.publish_in_page("user.42", "1", "json").await;
    assert!(
        browser
            .text("#publish-result")
            .await
            .contains("202 Accepted")
    );

    // Without a token the subscribe is refused, and the page says why.
    browser
        .type_into("#subscribe-form [name=topics]", "user.42")
        .await;
    browser.click("#connect").await;
    browser.wait_for_state("failed").await;
    assert!(
        browser.text("#log li.refused").await.contains("401"),
        "{}",
        browser.text("#log").await
    );

    // A token that expires in three or four seconds: the stream ends at
    // its exp. (Set, not typed: typing a JWT takes a while on a busy
    // machine; the publish goes straight to the hub for the same reason.)
    let mut short = claims("42", &[], &["user.{sub}"], 0);
    short["exp"] = json!(now() + 4);
    browser
        .set_value("#subscribe-form [name=token]", &minter.token(&short))
        .await;
    browser.click("#connect").await;
    browser.wait_for_state("open").await;
    let accepted = app
        .client
        .post(app.url("/v1/topics/user.42/events"))
        .bearer_auth(KEY)
        .json(&json!({"data": "before exp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let before = browser.wait_for_events(1).await;
    let expired = browser
        .wait_for_text("#log li.expired", "Token expired")
        .await;
    assert!(expired.contains(&before[0]), "{expired}");
    browser.wait_for_state("closed").await;
    assert_eq!(
        browser
            .eval("document.querySelector('#subscribe-form [name=resume]').value")
            .await,
        before[0].as_str(),
        "the page offers to resume where it was"
    );
    browser
        .publish_in_page("user.42", r#""while away""#, "json")
        .await;
    browser
        .screenshot("08-token-expired-desktop-light", Screen::Desktop)
        .await;

    // A new token resumes after the last event received.
    let fresh = claims("42", &[], &["user.{sub}"], 60);
    browser
        .set_value("#subscribe-form [name=token]", &minter.token(&fresh))
        .await;
    browser.click("#connect").await;
    browser.wait_for_state("open").await;
    browser.wait_for_events(2).await;
    assert_eq!(
        browser.text("#log li.event:last-child pre.data").await,
        "while away"
    );

    // Keys and tokens stayed in the fields.
    assert_eq!(
        browser
            .eval("localStorage.length + sessionStorage.length + document.cookie.length")
            .await,
        0
    );
    let log = browser.browser_log().await;
    let left = unexpected(
        &log,
        &[
            "/ssehub/v1/topics/user.42/events",
            "/ssehub/v1/events?topic=user.42",
        ],
    );
    assert!(left.is_empty(), "unexpected browser log: {left:#?}");
}
