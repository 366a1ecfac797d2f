//! What the per-process files of /proc say about a network namespace's holder: the cgroup
//! path of `/proc/<pid>/cgroup` classified into a container runtime and a container or pod
//! id, and the command name and start time of `/proc/<pid>/stat`.
//!
//! Pure and allocation-free: every function borrows the bytes it is given and returns
//! slices of them, so the classifier can be fuzzed (fuzz target `cgroup_path`) and unit
//! tested on the shapes the runtimes document.
//!
//! # The pattern table
//!
//! The path is split at `/` and its components are looked at from the innermost out; the
//! first row whose pattern one component matches decides (so a container inside a pod slice
//! is the container, not the slice). `<hex64>` is exactly 64 lower-case hex digits: anything
//! else is not taken for a container id.
//!
//! | component | runtime | id |
//! |---|---|---|
//! | `docker-<hex64>.scope` (systemd cgroup driver) | `docker` | the hex |
//! | `<hex64>` whose parent component is `docker` (cgroupfs driver) | `docker` | the hex |
//! | `cri-containerd-<hex64>.scope` | `containerd` | the hex |
//! | `crio-<hex64>.scope` | `cri-o` | the hex |
//! | `libpod-<hex64>.scope`, or `libpod-<hex64>` or `<hex64>` under a `libpod_parent` component (cgroupfs driver) | `podman` | the hex |
//! | `<hex64>` under a `pod<uid>` component under `kubepods` (cgroupfs driver) | `kubernetes` | the hex |
//! | `lxc.payload.<name>`, or `<name>` under `lxc.payload` or `lxc` | `lxc` | the name |
//! | `payload` (the cgroup systemd-nspawn puts its container in, cgroup v2) under `machine-<name>.scope` or `systemd-nspawn@<name>.service`, or under any other `<parent>` (`--keep-unit`: the unit or cgroup nspawn was started in) | `systemd-nspawn` | `<name>`, or the whole `<parent>` component |
//! | `machine-<name>.scope` | `systemd-nspawn` | the name (systemd-escaped as written) |
//! | `<unit>.service` | `service` | the unit |
//! | `init.scope`, or the root path `/` (also what a process sees in its own cgroup namespace) | `none` | empty |
//! | anything else (a login session, a user slice, an unknown runtime) | `unknown` | empty |
//!
//! The pod of `containerd`, `cri-o` and `kubernetes` rows is the uid of an enclosing
//! `kubepods-<qos>-pod<uid>.slice` (systemd driver: its `_` are the uid's `-`, restored) or
//! `pod<uid>` component (cgroupfs driver); empty outside Kubernetes.
//!
//! A `machine-<name>.scope` may also be a libvirt guest or a Podman container started with
//! `--cgroup-manager=systemd` in older versions: systemd names the scope for the machine
//! registration, and the registration is what is reported.

/// A container runtime as the cgroup path names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
    Kubernetes,
    Lxc,
    Nspawn,
    Service,
    Host,
    Unknown,
}

impl Runtime {
    /// The name discovery reports (`{#NETNS.RUNTIME}`).
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Kubernetes => "kubernetes",
            Runtime::Lxc => "lxc",
            Runtime::Nspawn => "systemd-nspawn",
            Runtime::Service => "service",
            Runtime::Host => "none",
            Runtime::Unknown => "unknown",
        }
    }
}

/// What a cgroup path says: the runtime, the container (or unit, or machine) id, the pod uid.
/// The id and pod borrow the path; the pod's `_` still need [`pod_uid_chars`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified<'a> {
    pub runtime: Runtime,
    pub id: &'a str,
    pub pod: &'a str,
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex_between<'a>(component: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    component
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .filter(|hex| is_hex64(hex))
}

/// The pod uid an enclosing component names, as written (systemd driver: with `_`).
fn pod_of(path: &str) -> &str {
    for component in path.split('/').rev() {
        if let Some(slice) = component.strip_suffix(".slice") {
            if let Some(at) = slice.rfind("-pod") {
                if slice.starts_with("kubepods") {
                    return &slice[at + 4..];
                }
            }
        }
        if let Some(uid) = component.strip_prefix("pod") {
            if !uid.is_empty() && path.contains("/kubepods") {
                return uid;
            }
        }
    }
    ""
}

/// The characters of a pod uid as reported: the systemd driver's `_` become `-`.
pub fn pod_uid_chars(pod: &str) -> impl Iterator<Item = char> + '_ {
    pod.chars().map(|c| if c == '_' { '-' } else { c })
}

/// Classifies one cgroup path (see the module's table). Never fails: an unknown shape is
/// [`Runtime::Unknown`] with an empty id.
pub fn classify(path: &str) -> Classified<'_> {
    let unknown = Classified {
        runtime: Runtime::Unknown,
        id: "",
        pod: "",
    };
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.starts_with('/') {
            Classified {
                runtime: Runtime::Host,
                ..unknown
            }
        } else {
            unknown
        };
    }
    let mut rest = trimmed;
    loop {
        let (parent, component) = match rest.rfind('/') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => ("", rest),
        };
        let parent_name = parent.rsplit('/').next().unwrap_or("");
        let found = |runtime, id| Classified {
            runtime,
            id,
            pod: match runtime {
                Runtime::Containerd | Runtime::CriO | Runtime::Kubernetes => pod_of(parent),
                _ => "",
            },
        };
        if let Some(id) = hex_between(component, "docker-", ".scope") {
            return found(Runtime::Docker, id);
        }
        if let Some(id) = hex_between(component, "cri-containerd-", ".scope") {
            return found(Runtime::Containerd, id);
        }
        if let Some(id) = hex_between(component, "crio-", ".scope") {
            return found(Runtime::CriO, id);
        }
        if let Some(id) = hex_between(component, "libpod-", ".scope") {
            return found(Runtime::Podman, id);
        }
        if let Some(id) = component
            .strip_prefix("libpod-")
            .filter(|hex| is_hex64(hex))
        {
            if parent_name == "libpod_parent" {
                return found(Runtime::Podman, id);
            }
        }
        if component == "payload" && !parent_name.is_empty() {
            let name = parent_name
                .strip_prefix("machine-")
                .and_then(|rest| rest.strip_suffix(".scope"))
                .or_else(|| {
                    parent_name
                        .strip_prefix("systemd-nspawn@")
                        .and_then(|rest| rest.strip_suffix(".service"))
                })
                .filter(|name| !name.is_empty())
                .unwrap_or(parent_name);
            return found(Runtime::Nspawn, name);
        }
        if is_hex64(component) {
            if parent_name == "docker" {
                return found(Runtime::Docker, component);
            }
            if parent_name == "libpod_parent" || parent.contains("/libpod_parent/") {
                return found(Runtime::Podman, component);
            }
            if parent_name.starts_with("pod") && parent.contains("/kubepods") {
                return found(Runtime::Kubernetes, component);
            }
        }
        if let Some(name) = component.strip_prefix("lxc.payload.") {
            if !name.is_empty() {
                return found(Runtime::Lxc, name);
            }
        }
        if (parent_name == "lxc.payload" || parent_name == "lxc") && !component.is_empty() {
            return found(Runtime::Lxc, component);
        }
        if let Some(name) = component
            .strip_prefix("machine-")
            .and_then(|rest| rest.strip_suffix(".scope"))
        {
            if !name.is_empty() {
                return found(Runtime::Nspawn, name);
            }
        }
        if component.len() > ".service".len() && component.ends_with(".service") {
            return found(Runtime::Service, component);
        }
        if component == "init.scope" && parent.is_empty() {
            return Classified {
                runtime: Runtime::Host,
                ..unknown
            };
        }
        if parent.is_empty() {
            return unknown;
        }
        rest = parent;
    }
}

/// The cgroup path of one `/proc/<pid>/cgroup`: the cgroup v2 line (`0::<path>`) when there
/// is one, else the v1 `name=systemd` hierarchy's, else the first line's. None if no line has
/// the `id:controllers:path` shape.
pub fn cgroup_path(text: &str) -> Option<&str> {
    let mut systemd = None;
    let mut first = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            return Some(path);
        }
        if controllers == "name=systemd" {
            systemd = systemd.or(Some(path));
        }
        first = first.or(Some(path));
    }
    systemd.or(first)
}

/// The command name and start time (field 22, clock ticks since boot) of one
/// `/proc/<pid>/stat`. The name sits between the first `(` and the *last* `)`: it may hold
/// spaces and parentheses itself.
pub fn stat_fields(text: &[u8]) -> Option<(&[u8], u64)> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = &text[open + 1..close];
    // After the name: field 3 (state) onwards; field 22 is the 20th of those.
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let start = rest.split_ascii_whitespace().nth(19)?.parse().ok()?;
    Some((comm, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b4f1d3c2b";

    fn shape(path: &str) -> (&'static str, String, String) {
        let c = classify(path);
        (
            c.runtime.name(),
            c.id.to_owned(),
            pod_uid_chars(c.pod).collect(),
        )
    }

    #[test]
    fn every_row_of_the_table() {
        let none = String::new();
        let hex = HEX.to_owned();
        let pod = "1b2c3d4e-0000-4000-8000-123456789abc".to_owned();
        let cases = [
            (
                format!("/system.slice/docker-{HEX}.scope"),
                ("docker", hex.clone(), none.clone()),
            ),
            (format!("/docker/{HEX}"), ("docker", hex.clone(), none.clone())),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b2c3d4e_0000_4000_8000_123456789abc.slice/cri-containerd-{HEX}.scope"),
                ("containerd", hex.clone(), pod.clone()),
            ),
            (
                format!("/kubepods.slice/kubepods-pod1b2c3d4e_0000_4000_8000_123456789abc.slice/crio-{HEX}.scope"),
                ("cri-o", hex.clone(), pod.clone()),
            ),
            (
                format!("/kubepods/burstable/pod1b2c3d4e-0000-4000-8000-123456789abc/{HEX}"),
                ("kubernetes", hex.clone(), pod.clone()),
            ),
            (
                format!("/kubepods/pod1b2c3d4e-0000-4000-8000-123456789abc/{HEX}"),
                ("kubernetes", hex.clone(), pod.clone()),
            ),
            (
                format!("/machine.slice/libpod-{HEX}.scope"),
                ("podman", hex.clone(), none.clone()),
            ),
            (
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{HEX}.scope/container"),
                ("podman", hex.clone(), none.clone()),
            ),
            (
                format!("/libpod_parent/{HEX}"),
                ("podman", hex.clone(), none.clone()),
            ),
            (
                format!("/libpod_parent/libpod-{HEX}"),
                ("podman", hex.clone(), none.clone()),
            ),
            (
                "/machine.slice/systemd-nspawn@deb12.service/payload".to_owned(),
                ("systemd-nspawn", "deb12".into(), none.clone()),
            ),
            (
                "/ls-test-42-nspawn-box/payload".to_owned(),
                ("systemd-nspawn", "ls-test-42-nspawn-box".into(), none.clone()),
            ),
            ("/lxc.payload.web1".to_owned(), ("lxc", "web1".into(), none.clone())),
            ("/lxc.payload.web1/init.scope".to_owned(), ("lxc", "web1".into(), none.clone())),
            ("/lxc/web1".to_owned(), ("lxc", "web1".into(), none.clone())),
            (
                "/machine.slice/machine-deb12.scope/payload".to_owned(),
                ("systemd-nspawn", "deb12".into(), none.clone()),
            ),
            (
                "/machine.slice/machine-my\\x2dbox.scope".to_owned(),
                ("systemd-nspawn", "my\\x2dbox".into(), none.clone()),
            ),
            (
                "/system.slice/nginx.service".to_owned(),
                ("service", "nginx.service".into(), none.clone()),
            ),
            ("/init.scope".to_owned(), ("none", none.clone(), none.clone())),
            ("/".to_owned(), ("none", none.clone(), none.clone())),
            (
                "/user.slice/user-0.slice/session-4.scope".to_owned(),
                ("unknown", none.clone(), none.clone()),
            ),
            ("/custom/thing".to_owned(), ("unknown", none.clone(), none.clone())),
            ("".to_owned(), ("unknown", none.clone(), none.clone())),
        ];
        for (path, (runtime, id, pod)) in cases {
            assert_eq!(shape(&path), (runtime, id, pod), "{path}");
        }
    }

    #[test]
    fn near_misses_are_unknown_never_guessed() {
        for path in [
            format!("/system.slice/docker-{}.scope", &HEX[..63]),
            format!("/system.slice/docker-{}.scope", HEX.to_uppercase()),
            format!("/system.slice/docker-{HEX}x.scope"),
            format!("/other/{HEX}"),
            format!("/machine.slice/libpod-conmon-{HEX}.scope"),
            format!("/other/libpod-{HEX}"),
            format!("/libpod_parent/libpod-{}", &HEX[..63]),
            "/payload".to_owned(),
            "/machine.slice/machine-.scope".to_owned(),
            "/system.slice/.service".to_owned(),
            "/lxc.payload.".to_owned(),
            "/system.slice/init.scope".to_owned(),
        ] {
            assert_eq!(classify(&path).runtime, Runtime::Unknown, "{path}");
            assert_eq!(classify(&path).id, "", "{path}");
        }
    }

    #[test]
    fn the_cgroup_line_v2_first_then_systemd_then_first() {
        assert_eq!(
            cgroup_path("0::/system.slice/a.service\n"),
            Some("/system.slice/a.service")
        );
        let hybrid =
            "12:pids:/x\n1:name=systemd:/system.slice/b.service\n0::/system.slice/c.service\n";
        assert_eq!(cgroup_path(hybrid), Some("/system.slice/c.service"));
        let v1 = "12:pids:/x\n1:name=systemd:/system.slice/b.service\n";
        assert_eq!(cgroup_path(v1), Some("/system.slice/b.service"));
        assert_eq!(
            cgroup_path("3:cpu,cpuacct:/docker/abc\n"),
            Some("/docker/abc")
        );
        assert_eq!(cgroup_path("garbage\n"), None);
        assert_eq!(cgroup_path(""), None);
        // A path holding ':' is kept whole.
        assert_eq!(cgroup_path("0::/a:b\n"), Some("/a:b"));
    }

    #[test]
    fn stat_name_and_start_time() {
        let line = b"4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615\n";
        assert_eq!(stat_fields(line), Some((&b"my (odd) name"[..], 987654)));
        assert_eq!(stat_fields(b"1 (init) S 1 2 3"), None);
        assert_eq!(stat_fields(b"no parens"), None);
        assert_eq!(stat_fields(b") ("), None);
    }
}
