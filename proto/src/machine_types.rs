//! The GCE machine types clawops knows prices and memory of: the agent's memory advice climbs
//! this ladder, and `clawops resize` shows what a change costs. One table, shared.

const GIB: u64 = 1 << 30;

/// A rung of the ladder, with its us-central1 on-demand list price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MachineType {
    pub name: &'static str,
    /// Bytes. GCE counts machine memory in GiB ("1 GB" for e2-micro is 1 GiB).
    pub memory: u64,
    pub usd_month: f64,
}

/// Smallest first.
pub const LADDER: [MachineType; 4] = [
    MachineType {
        name: "e2-micro",
        memory: GIB,
        usd_month: 6.11,
    },
    MachineType {
        name: "e2-small",
        memory: 2 * GIB,
        usd_month: 12.23,
    },
    MachineType {
        name: "e2-medium",
        memory: 4 * GIB,
        usd_month: 24.46,
    },
    MachineType {
        name: "e2-standard-2",
        memory: 8 * GIB,
        usd_month: 48.91,
    },
];

/// The rung named `name`, with its position on the ladder.
pub fn find(name: &str) -> Option<(usize, &'static MachineType)> {
    LADDER.iter().enumerate().find(|(_, m)| m.name == name)
}

/// Where the prices come from, for anyone showing them.
pub const PRICE_SOURCE: &str = "us-central1 on-demand list price";
