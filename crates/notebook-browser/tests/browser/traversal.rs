//! Nothing outside the root can be read, whatever the spelling: one test per kind of attempt,
//! each on all three routes. The secret file's bytes must never appear in any answer.

use crate::Server;
use crate::fixtures::SECRET;

const ROUTES: [&str; 3] = ["/api/contents/", "/files/", "/view/"];

fn assert_refused(server: &Server, rest: &str, expected_status: u16) {
    for route in ROUTES {
        let target = format!("{route}{rest}");
        let reply = server.get(&target);
        assert_eq!(
            reply.status,
            expected_status,
            "GET {target}: {}",
            reply.text()
        );
        assert!(
            !reply.text().contains(SECRET),
            "GET {target} leaked the secret"
        );
        if route != "/view/" {
            assert!(!reply.error().is_empty(), "GET {target}");
        } else {
            assert!(
                reply.text().contains("<h1>"),
                "GET {target}: an HTML error page"
            );
        }
    }
}

#[test]
fn dot_dot_segments_are_refused() {
    let server = Server::start();
    assert_refused(&server, "../outside/secret.txt", 403);
    assert_refused(&server, "sub%20dir/../../outside/secret.txt", 403);
    assert_refused(&server, "./notes.txt", 403);
}

#[test]
fn percent_encoded_traversal_is_refused() {
    let server = Server::start();
    assert_refused(&server, "%2e%2e/outside/secret.txt", 403);
    assert_refused(&server, "%2E%2E%2Foutside%2Fsecret.txt", 403);
    assert_refused(&server, ".%2e/outside/secret.txt", 403);
    assert_refused(&server, "sub%20dir%2F..%2F..%2Foutside%2Fsecret.txt", 403);
    assert_refused(&server, "..%5Coutside%5Csecret.txt", 403);
}

#[test]
fn absolute_paths_are_refused() {
    let server = Server::start();
    let secret = server.fixture.outside.join("secret.txt");
    let absolute = secret.to_str().expect("utf-8 temp path");
    // `/files//tmp/...` (an absolute path after the route) and `%2Ftmp%2F...`.
    assert_refused(&server, absolute, 403);
    assert_refused(&server, &absolute.replace('/', "%2F"), 403);
}

#[test]
fn nul_and_control_characters_are_refused() {
    let server = Server::start();
    assert_refused(&server, "notes.txt%00.ipynb", 403);
    assert_refused(&server, "notes%0A.txt", 403);
}

#[test]
fn symlinks_leaving_the_root_are_refused() {
    let server = Server::start();
    assert_refused(&server, "escape.txt", 403);
    assert_refused(&server, "escape-dir/secret.txt", 403);
    assert_refused(&server, "escape-dir", 403);
}

#[test]
fn a_symlink_created_after_start_is_checked_too() {
    let server = Server::start();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&server.fixture.outside, server.fixture.root.join("later"))
        .expect("symlink");
    assert_refused(&server, "later/secret.txt", 403);
}
