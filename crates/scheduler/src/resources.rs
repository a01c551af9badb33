//! The three schedulable resources and their checked arithmetic.

use std::fmt;

/// An amount of the three resources the scheduler accounts for.
///
/// All arithmetic is checked: an operation that would overflow or go below zero returns `None`
/// (or saturates, where the name says so) instead of panicking or wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Resources {
    /// CPU in millicores (1000 = one core), as Kubernetes counts it.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Whole GPUs.
    pub gpus: u64,
}

/// One of the three dimensions of [`Resources`], in the order explanations name them
/// (the scarcest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    Gpu,
    Cpu,
    Memory,
}

impl Dimension {
    /// All dimensions, GPUs first.
    pub const ALL: [Dimension; 3] = [Dimension::Gpu, Dimension::Cpu, Dimension::Memory];

    /// The plural noun used in messages ("GPUs", "CPU", "memory").
    pub fn noun(self) -> &'static str {
        match self {
            Dimension::Gpu => "GPUs",
            Dimension::Cpu => "CPU",
            Dimension::Memory => "memory",
        }
    }
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

impl Resources {
    /// Nothing at all.
    pub const ZERO: Resources = Resources {
        cpu_millis: 0,
        memory_bytes: 0,
        gpus: 0,
    };

    /// No limit: the largest representable amount of every resource (a queue without a cap).
    pub const UNLIMITED: Resources = Resources {
        cpu_millis: u64::MAX,
        memory_bytes: u64::MAX,
        gpus: u64::MAX,
    };

    /// A new amount.
    pub const fn new(cpu_millis: u64, memory_bytes: u64, gpus: u64) -> Self {
        Resources {
            cpu_millis,
            memory_bytes,
            gpus,
        }
    }

    /// The amount in one dimension.
    pub fn get(&self, dim: Dimension) -> u64 {
        match dim {
            Dimension::Gpu => self.gpus,
            Dimension::Cpu => self.cpu_millis,
            Dimension::Memory => self.memory_bytes,
        }
    }

    fn map2(self, other: Resources, f: impl Fn(u64, u64) -> Option<u64>) -> Option<Resources> {
        Some(Resources {
            cpu_millis: f(self.cpu_millis, other.cpu_millis)?,
            memory_bytes: f(self.memory_bytes, other.memory_bytes)?,
            gpus: f(self.gpus, other.gpus)?,
        })
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Resources) -> Option<Resources> {
        self.map2(other, u64::checked_add)
    }

    /// `self - other`, or `None` if any dimension would go below zero.
    pub fn checked_sub(self, other: Resources) -> Option<Resources> {
        self.map2(other, u64::checked_sub)
    }

    /// `self * n`, or `None` on overflow.
    pub fn checked_mul(self, n: u64) -> Option<Resources> {
        self.map2(Resources::new(n, n, n), u64::checked_mul)
    }

    /// `self + other`, each dimension clamped at `u64::MAX`.
    pub fn saturating_add(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            gpus: self.gpus.saturating_add(other.gpus),
        }
    }

    /// `self - other`, each dimension clamped at zero.
    pub fn saturating_sub(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            gpus: self.gpus.saturating_sub(other.gpus),
        }
    }

    /// The per-dimension minimum.
    pub fn min(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.min(other.cpu_millis),
            memory_bytes: self.memory_bytes.min(other.memory_bytes),
            gpus: self.gpus.min(other.gpus),
        }
    }

    /// The per-dimension maximum.
    pub fn max(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            gpus: self.gpus.max(other.gpus),
        }
    }

    /// True when every dimension of `self` is at most that of `other` (`self` fits in `other`).
    pub fn fits_in(&self, other: &Resources) -> bool {
        self.cpu_millis <= other.cpu_millis
            && self.memory_bytes <= other.memory_bytes
            && self.gpus <= other.gpus
    }

    /// True when all three dimensions are zero.
    pub fn is_zero(&self) -> bool {
        *self == Resources::ZERO
    }

    /// The first dimension (GPUs, CPU, memory) in which `self` exceeds `other`, if any.
    pub fn first_excess(&self, other: &Resources) -> Option<Dimension> {
        Dimension::ALL
            .into_iter()
            .find(|&d| self.get(d) > other.get(d))
    }

    /// The amount in one dimension, formatted for a human ("4 GPUs", "1.5 CPU", "32 GiB").
    pub fn show(&self, dim: Dimension) -> String {
        show_amount(dim, self.get(dim))
    }
}

/// Formats an amount of one dimension for a human: `"1 GPU"`, `"2 GPUs"`, `"500m CPU"`,
/// `"4 CPU"`, `"1.5 CPU"`, `"512 MiB"`, `"32 GiB"`, `"unlimited"`.
pub fn show_amount(dim: Dimension, v: u64) -> String {
    if v == u64::MAX {
        return format!("unlimited {}", dim.noun());
    }
    match dim {
        Dimension::Gpu if v == 1 => "1 GPU".to_string(),
        Dimension::Gpu => format!("{v} GPUs"),
        Dimension::Cpu if v.is_multiple_of(1000) => format!("{} CPU", v / 1000),
        Dimension::Cpu if v < 1000 => format!("{v}m CPU"),
        Dimension::Cpu => format!("{} CPU", trim_decimal(v as f64 / 1000.0)),
        Dimension::Memory => show_bytes(v),
    }
}

fn show_bytes(v: u64) -> String {
    for (unit, name) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if v >= unit {
            return if v.is_multiple_of(unit) {
                format!("{} {name}", v / unit)
            } else {
                format!("{} {name}", trim_decimal(v as f64 / unit as f64))
            };
        }
    }
    format!("{v} bytes")
}

fn trim_decimal(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl fmt::Display for Resources {
    /// Lists the non-zero dimensions, GPUs first: `"2 GPUs, 8 CPU, 32 GiB"`; `"nothing"` if zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Dimension::ALL
            .into_iter()
            .filter(|&d| self.get(d) > 0)
            .map(|d| self.show(d))
            .collect();
        if parts.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic_never_wraps() {
        let big = Resources::new(u64::MAX, 1, 1);
        assert_eq!(big.checked_add(Resources::new(1, 0, 0)), None);
        assert_eq!(
            Resources::new(1, 1, 1).checked_sub(Resources::new(0, 2, 0)),
            None
        );
        assert_eq!(big.checked_mul(2), None);
        assert_eq!(
            Resources::new(3, 4, 5).checked_mul(2),
            Some(Resources::new(6, 8, 10))
        );
        assert_eq!(big.saturating_add(big).cpu_millis, u64::MAX);
        assert_eq!(
            Resources::new(1, 1, 1).saturating_sub(big),
            Resources::new(0, 0, 0)
        );
    }

    #[test]
    fn fits_in_needs_every_dimension() {
        let node = Resources::new(4000, 8 * GIB, 0);
        assert!(Resources::new(4000, 8 * GIB, 0).fits_in(&node));
        assert!(!Resources::new(1000, GIB, 1).fits_in(&node));
        assert_eq!(
            Resources::new(1000, GIB, 1).first_excess(&node),
            Some(Dimension::Gpu)
        );
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(
            Resources::new(500, 512 * MIB, 0).to_string(),
            "500m CPU, 512 MiB"
        );
        assert_eq!(
            Resources::new(1500, 3 * GIB / 2, 1).to_string(),
            "1 GPU, 1.5 CPU, 1.5 GiB"
        );
        assert_eq!(
            Resources::new(8000, 32 * GIB, 4).to_string(),
            "4 GPUs, 8 CPU, 32 GiB"
        );
        assert_eq!(Resources::ZERO.to_string(), "nothing");
        assert_eq!(show_amount(Dimension::Memory, 100), "100 bytes");
    }
}
