//! A dashboard bound beyond loopback (an address in a network namespace) serves only
//! requests that carry the cluster's token, as Jupyter's does.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{chorus_bin, Namespaces};

/// What a browser in another namespace gets: status and body per request, as JSON.
const PROBE: &str = r#"
import json, sys, urllib.request, urllib.error
link, token = sys.argv[1], sys.argv[2]
base = link.split('/status')[0]
def get(url, headers={}):
    try:
        r = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
        return r.status, r.read().decode(), r.headers.get('Set-Cookie')
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), None
out = {}
for name, path in [('api', '/api/workers'), ('metrics', '/metrics'), ('page', '/status'), ('stream', '/api/stream'),
                   ('bad_token', '/api/workers?token=' + 'f' * len(token))]:
    out[name] = get(base + path)[:2]
code, _, cookie = get(link)
out['link'] = code
out['cookie'] = cookie or ''
out['with_cookie'] = get(base + '/api/workers', {'Cookie': (cookie or '').split(';')[0]})[:2]
out['with_header'] = get(base + '/api/workers', {'Authorization': 'token ' + token})[0]
print(json.dumps(out))
"#;

#[test]
fn a_dashboard_beyond_loopback_refuses_requests_without_the_token() {
    let Some(ns) = Namespaces::for_test(2) else { return };
    let dir = std::env::temp_dir().join(format!("chorus-dashboard-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut scheduler = ns
        .exec(0, chorus_bin())
        .args(["scheduler", "--listen", "10.123.0.1:0", "--dashboard", "10.123.0.1:8787", "--cluster-file"])
        .arg(dir.join("cluster"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chorus scheduler starts");
    let mut out = BufReader::new(scheduler.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    let link = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0 && Instant::now() < deadline, "the scheduler printed no dashboard link");
        if let Some(link) = line.trim().strip_prefix("Dashboard: ") {
            break link.to_string();
        }
    };
    assert!(link.starts_with("http://10.123.0.1:8787/status?token="), "{link}");
    let token = link.rsplit('=').next().unwrap().to_string();
    assert_eq!(token.len(), 32);

    let probe = ns.exec(1, "python3").args(["-c", PROBE, &link, &token]).output().expect("python3 runs");
    let _ = scheduler.kill();
    let _ = scheduler.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(probe.status.success(), "{}", String::from_utf8_lossy(&probe.stderr));
    let got: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    for name in ["api", "metrics", "page", "stream", "bad_token"] {
        assert_eq!(got[name][0], 401, "{name} without the token: {got}");
        let body = got[name][1].as_str().unwrap();
        assert!(body.contains("token") && !body.contains("10.123") && !body.contains("pid"), "the refusal says what to do and nothing else: {body}");
    }
    assert_eq!(got["link"], 200, "the printed link opens the dashboard");
    let cookie = got["cookie"].as_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert_eq!(got["with_cookie"][0], 200, "the cookie the link set lets the page's own requests through");
    assert!(got["with_cookie"][1].as_str().unwrap().contains("\"workers\""));
    assert_eq!(got["with_header"], 200);
}
