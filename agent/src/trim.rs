//! Gives back what start-up and finished calls left resident, once the agent is quiet.
//!
//! The agent idles for days between calls, beside a Node gateway on a 1–2 GB VM. Code that ran
//! once (config parsing, start-up recovery, an Update, a Verify) stays mapped in its resident
//! set, about 10 MiB, until memory pressure reclaims it, while the idle loop needs a third of
//! that. So after a quiet spell the agent drops its mappings of the read-only segments of the
//! loaded objects (code and constants) and returns free heap to the kernel. Those pages are
//! clean copies of files still in the page cache: what runs next maps them back with a minor
//! fault, and nothing that was ever written is touched (see [`trim`]).
use std::{
    ffi::{CStr, c_int, c_void},
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

/// How long without a new call (and without an open stream) before trimming.
pub const QUIET: Duration = Duration::from_secs(15);

/// What one trim gave back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// Read-only segments whose page-table entries were dropped.
    pub segments: usize,
    /// Their size (mapped or not; the kernel only unmaps what was resident).
    pub bytes: usize,
}

/// Trims after start-up and after every burst of calls, once `requests` (bumped per call) has
/// not moved for [`QUIET`] and no stream is open. Runs until the runtime stops.
pub async fn when_quiet(requests: Arc<AtomicU64>, open_streams: Arc<AtomicU32>) {
    let mut seen = requests.load(Ordering::Relaxed);
    // Start-up is the first burst.
    let mut trimmed_after: Option<u64> = None;
    loop {
        tokio::time::sleep(QUIET).await;
        let now = requests.load(Ordering::Relaxed);
        let quiet = now == seen && open_streams.load(Ordering::Relaxed) == 0;
        if quiet && trimmed_after != Some(now) {
            let t = trim();
            tracing::debug!(
                segments = t.segments,
                kib = t.bytes / 1024,
                "trimmed idle pages"
            );
            trimmed_after = Some(now);
        }
        seen = now;
    }
}

/// Drops this process's mappings of every loaded object's read-only `PT_LOAD` segments and
/// trims the heap.
///
/// Safe because of what is skipped: writable segments (data, and the RELRO part the loader
/// relocated, which lives inside the writable `PT_LOAD`), objects with text relocations (their
/// "read-only" pages were written), the vDSO, and the partial pages at a segment's ends that
/// could be shared with a neighbour. `dl_iterate_phdr` holds the loader's lock, so no object
/// is unloaded (and its addresses reused) while this runs.
pub fn trim() -> Trimmed {
    let mut trimmed = Trimmed::default();
    // SAFETY: the callback only reads the program headers the loader hands it and calls
    // madvise on whole pages inside non-writable segments of objects without text relocations.
    unsafe {
        libc::dl_iterate_phdr(Some(drop_readonly_segments), (&raw mut trimmed).cast());
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory at the top of, and inside, glibc's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
    trimmed
}

unsafe extern "C" fn drop_readonly_segments(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> c_int {
    // SAFETY: the loader passes a valid info for the duration of the call; `data` is the
    // `Trimmed` that `trim` lent.
    let (info, trimmed) = unsafe { (&*info, &mut *data.cast::<Trimmed>()) };
    if info.dlpi_phdr.is_null() || is_vdso(info) {
        return 0;
    }
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    if headers
        .iter()
        .filter(|h| h.p_type == libc::PT_DYNAMIC)
        .any(|h| unsafe { has_text_relocations(info.dlpi_addr as usize + h.p_vaddr as usize) })
    {
        return 0;
    }
    let page = page_size();
    for h in headers
        .iter()
        .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0)
    {
        let start = info.dlpi_addr as usize + h.p_vaddr as usize;
        let (from, to) = whole_pages(start, start + h.p_memsz as usize, page);
        if to > from {
            // SAFETY: [from, to) is whole pages of a mapped, never-written file segment.
            let rc = unsafe { libc::madvise(from as *mut c_void, to - from, libc::MADV_DONTNEED) };
            if rc == 0 {
                trimmed.segments += 1;
                trimmed.bytes += to - from;
            }
        }
    }
    0
}

fn is_vdso(info: &libc::dl_phdr_info) -> bool {
    if info.dlpi_name.is_null() {
        return false;
    }
    // SAFETY: a non-null dlpi_name is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
    name.starts_with(b"linux-vdso") || name.starts_with(b"linux-gate")
}

/// Whether the dynamic section at `dynamic` asks for text relocations.
///
/// # Safety
/// `dynamic` must be the address of a loaded object's `PT_DYNAMIC` segment.
unsafe fn has_text_relocations(dynamic: usize) -> bool {
    /// `Elf64_Dyn` (the libc crate does not declare it).
    #[repr(C)]
    struct Dyn {
        d_tag: i64,
        d_val: u64,
    }
    const DT_TEXTREL: i64 = 22;
    const DT_FLAGS: i64 = 30;
    const DF_TEXTREL: u64 = 0x4;
    let mut entry = dynamic as *const Dyn;
    loop {
        // SAFETY: the dynamic section is an array ended by DT_NULL.
        let dyn_entry = unsafe { &*entry };
        match dyn_entry.d_tag {
            0 => return false,
            DT_TEXTREL => return true,
            DT_FLAGS if dyn_entry.d_val & DF_TEXTREL != 0 => return true,
            _ => {}
        }
        // SAFETY: not past DT_NULL yet.
        entry = unsafe { entry.add(1) };
    }
}

/// The whole pages inside [start, end).
fn whole_pages(start: usize, end: usize, page: usize) -> (usize, usize) {
    (start.div_ceil(page) * page, end / page * page)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_pages_inside_the_segment() {
        assert_eq!(whole_pages(0x1000, 0x3000, 0x1000), (0x1000, 0x3000));
        assert_eq!(whole_pages(0x1001, 0x3fff, 0x1000), (0x2000, 0x3000));
        let (from, to) = whole_pages(0x1800, 0x1900, 0x1000);
        assert!(to <= from, "nothing inside");
    }

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// The process keeps working after its code pages are dropped (they fault back in), and
    /// its resident set shrinks.
    #[test]
    fn code_keeps_running_after_a_trim_and_rss_drops() {
        let before = rss_kib();
        let t = trim();
        assert!(t.segments >= 2, "{t:?}");
        let after = rss_kib();
        assert!(after < before, "RSS {before} KiB → {after} KiB");
        // Runs code and reads constants from all over the binary and libc.
        let text = format!("{:?} {}", vec![1.5f64, 2.0], "x".repeat(10));
        assert_eq!(text, "[1.5, 2.0] xxxxxxxxxx");
        let parsed: toml::Value = toml::from_str("a = [1, 2]").unwrap();
        assert_eq!(parsed["a"][1].as_integer(), Some(2));
        assert!(trim().segments >= 2, "again");
    }
}
