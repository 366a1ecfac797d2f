//! Fuzz target: the per-process files discovery reads, as an unprivileged agent finds them
//! (any process may put almost anything in its command name, and a runtime names cgroups).
//!
//! The input is taken as a `/proc/<pid>/cgroup` file (lossy UTF-8): the chosen line's path is
//! classified, and the answer must hold what the pattern table promises: the id borrows the
//! path; a hex-id runtime's id is 64 lower-case hex digits named by one component; `unknown`
//! and `none` carry no id; a pod only with a Kubernetes runtime. The same bytes as a
//! `/proc/<pid>/stat` line: the name lies inside the input, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linux_status::netns::{cgroup_path, classify, stat_fields, Runtime};

fuzz_target!(|data: &[u8]| {
    if let Some((comm, _start)) = stat_fields(data) {
        assert!(comm.len() < data.len());
    }
    let text = String::from_utf8_lossy(data);
    let Some(path) = cgroup_path(&text) else {
        return;
    };
    let found = classify(path);
    let range = path.as_ptr() as usize..=path.as_ptr() as usize + path.len();
    assert!(range.contains(&(found.id.as_ptr() as usize)) || found.id.is_empty());
    assert!(path.contains(found.id));
    match found.runtime {
        Runtime::Docker
        | Runtime::Containerd
        | Runtime::CriO
        | Runtime::Podman
        | Runtime::Kubernetes => {
            assert_eq!(found.id.len(), 64, "{path:?}");
            assert!(found
                .id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        Runtime::Unknown | Runtime::Host => assert!(found.id.is_empty(), "{path:?}"),
        Runtime::Lxc | Runtime::Nspawn | Runtime::Service => {
            assert!(!found.id.is_empty() && !found.id.contains('/'), "{path:?}");
        }
    }
    if !found.pod.is_empty() {
        assert!(matches!(
            found.runtime,
            Runtime::Containerd | Runtime::CriO | Runtime::Kubernetes
        ));
    }
});
