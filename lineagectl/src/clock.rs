//! Event times: the agent stamps events with the boot-time clock (`CLOCK_BOOTTIME`, which
//! counts suspend too), people read wall-clock local time.
//!
//! For an agent on this host (same boot id) the conversion is exact up to clock adjustments:
//! `wall = now_wall - (now_boot - time_ns)`. For another host we cannot read its boot clock,
//! so the offset is estimated from live events as the smallest `receive_wall - time_ns` seen:
//! it errs late by at most the fastest delivery observed, and only gets better.

use std::time::{SystemTime, UNIX_EPOCH};

/// `CLOCK_BOOTTIME` now, in ns.
pub fn boot_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Wall-clock now, in ns since the Unix epoch.
pub fn wall_now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Wall-clock time of a boot-clock instant, given one simultaneous reading of both clocks.
pub fn boot_to_wall(time_ns: u64, now_wall_ns: i128, now_boot_ns: u64) -> i128 {
    now_wall_ns - (now_boot_ns as i128 - time_ns as i128)
}

/// This host's boot id (`/proc/sys/kernel/random/boot_id`), if readable.
pub fn local_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Turns event times into wall-clock times.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The events come from this boot: convert with the local clocks.
    Local,
    /// Another host or boot: wall − boot offset estimated from receipt times (None until the
    /// first event).
    Estimated(Option<i128>),
}

impl Clock {
    /// `Local` when the agent's boot id is this host's.
    pub fn for_boot(agent_boot_id: Option<&str>) -> Clock {
        match (agent_boot_id, local_boot_id()) {
            (Some(a), Some(l)) if a == l => Clock::Local,
            _ => Clock::Estimated(None),
        }
    }

    /// Learns from an event received now (only the estimate needs it).
    pub fn observe(&mut self, time_ns: u64, received_wall_ns: i128) {
        if let Clock::Estimated(offset) = self {
            let o = received_wall_ns - time_ns as i128;
            *offset = Some(offset.map_or(o, |cur| cur.min(o)));
        }
    }

    /// Wall-clock ns of a boot-clock time, if known.
    pub fn wall(&self, time_ns: u64) -> Option<i128> {
        match self {
            Clock::Local => Some(boot_to_wall(time_ns, wall_now_ns(), boot_now_ns())),
            Clock::Estimated(o) => o.map(|o| time_ns as i128 + o),
        }
    }

    /// `HH:MM:SS.mmm` local time, or the raw boot time when no conversion is known.
    pub fn format(&self, time_ns: u64) -> String {
        match self.wall(time_ns) {
            Some(w) => format_hms(w, utc_offset_secs(w.div_euclid(1_000_000_000) as i64)),
            None => format!("boot+{:.3}s", time_ns as f64 / 1e9),
        }
    }
}

/// The local time zone's offset from UTC at a Unix time, in seconds (0 when unknown).
pub fn utc_offset_secs(unix_secs: i64) -> i64 {
    let t = unix_secs as libc::time_t;
    // SAFETY: all-zero is a valid `tm`; localtime_r only writes into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        0
    } else {
        tm.tm_gmtoff
    }
}

/// `HH:MM:SS.mmm` of a wall-clock instant in a zone `offset_secs` east of UTC.
pub fn format_hms(wall_ns: i128, offset_secs: i64) -> String {
    let local_ms = wall_ns.div_euclid(1_000_000) + offset_secs as i128 * 1000;
    let ms_of_day = local_ms.rem_euclid(86_400_000);
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

/// `YYYY-MM-DD HH:MM:SS` local time of a wall-clock instant in ns.
pub fn format_datetime(wall_ns: i128) -> String {
    let secs = wall_ns.div_euclid(1_000_000_000) as libc::time_t;
    // SAFETY: all-zero is a valid `tm`; localtime_r only writes into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return format!("@{secs}");
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_converts_to_wall_time() {
        // Booted 1000 s before the wall time 1_700_000_000 s; an event 10 s after boot.
        let now_wall = 1_700_000_000_000_000_000i128;
        let now_boot = 1_000_000_000_000u64;
        let ev = 10_000_000_000u64;
        assert_eq!(
            boot_to_wall(ev, now_wall, now_boot),
            now_wall - 990_000_000_000
        );
        // An event stamped "now" is now.
        assert_eq!(boot_to_wall(now_boot, now_wall, now_boot), now_wall);
    }

    #[test]
    fn local_conversion_matches_the_clocks() {
        let before = wall_now_ns();
        let w = Clock::Local.wall(boot_now_ns()).unwrap();
        let after = wall_now_ns();
        assert!(before - 1_000_000 <= w && w <= after + 1_000_000);
    }

    #[test]
    fn hms_formatting_with_offsets() {
        // 2023-11-14 22:13:20.123 UTC
        let t = 1_700_000_000_123_456_789i128;
        assert_eq!(format_hms(t, 0), "22:13:20.123");
        assert_eq!(format_hms(t, 3600), "23:13:20.123");
        assert_eq!(format_hms(t, 2 * 3600), "00:13:20.123");
        assert_eq!(format_hms(t, -5 * 3600 - 1800), "16:43:20.123");
    }

    #[test]
    fn the_estimate_takes_the_fastest_delivery() {
        let mut c = Clock::Estimated(None);
        assert_eq!(c.format(1_500_000_000), "boot+1.500s");
        c.observe(1_000, 5_000); // offset 4000
        c.observe(2_000, 5_500); // offset 3500: delivered faster
        c.observe(3_000, 9_000); // slower, ignored
        assert_eq!(c.wall(10_000), Some(13_500));
    }
}
