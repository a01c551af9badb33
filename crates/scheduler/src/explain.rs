//! One-line human messages for [`Reason`]s: what the job waits for, in the resource that binds.

use crate::{Dimension, Reason, Resources};

impl Reason {
    /// The message shown in events and the UI: `"waiting: ..."` or `"rejected: ..."`.
    pub fn message(&self) -> String {
        match self {
            Reason::Rejected(r) => format!("rejected: {r}"),
            Reason::QueueCapability {
                queue,
                needs,
                allocated,
                capability,
                effective_capability,
            } => {
                let after = allocated.saturating_add(*needs);
                let d = after
                    .first_excess(effective_capability)
                    .unwrap_or(Dimension::Gpu);
                let free = effective_capability.saturating_sub(*allocated);
                let mut m = format!(
                    "waiting: gang needs {}, queue {queue} has {} free of capability {}",
                    needs.show(d),
                    free.show(d),
                    capability.show(d)
                );
                if effective_capability.get(d) < capability.get(d) {
                    m.push_str(&format!(
                        " ({} after other queues' guarantees)",
                        effective_capability.show(d)
                    ));
                }
                m
            }
            Reason::FairShare {
                queue,
                needs,
                allocated,
                deserved,
                weight,
                total_weight,
            } => {
                let d = Dimension::ALL
                    .into_iter()
                    .find(|&d| {
                        needs.get(d) > 0
                            && allocated.get(d).saturating_add(needs.get(d)) > deserved.get(d)
                    })
                    .unwrap_or(Dimension::Cpu);
                format!(
                    "waiting: queue {queue} holds {} and the gang needs {} more, past the \
                     queue's fair share of {} (weight {weight} of {total_weight}); capacity \
                     goes to queues below their share first and nothing left over fits this gang",
                    allocated.show(d),
                    needs.show(d),
                    deserved.show(d)
                )
            }
            Reason::BehindStarvingJob { queue, job } => format!(
                "waiting: job {job} of queue {queue} has waited past the starvation limit and \
                 goes first; the queue admits nothing past it until it starts"
            ),
            Reason::Insufficient {
                replicas,
                needs,
                role,
                request,
                fits_alone,
                fitted,
                free,
                reserved_for,
            } => {
                let mut m = if *fits_alone {
                    format!(
                        "waiting: gang needs {replicas} {} ({needs} in all) and only {fitted} fit \
                         on the free capacity now",
                        plural(*replicas, "replica")
                    )
                } else {
                    format!(
                        "waiting: no node has free capacity for a {role} replica ({request}); \
                         the gang needs {replicas} {} ({needs} in all)",
                        plural(*replicas, "replica")
                    )
                };
                m.push_str(&format!(
                    "; the cluster has {} free",
                    show_free(free, needs)
                ));
                if !reserved_for.is_empty() {
                    m.push_str(&format!(
                        "; capacity is held for starving {} {}",
                        plural(reserved_for.len() as u64, "job"),
                        reserved_for.join(", ")
                    ));
                }
                m
            }
            Reason::Draining {
                waited_secs,
                needs,
                nodes,
            } => {
                let shown: Vec<&str> = nodes.iter().take(3).map(String::as_str).collect();
                let more = if nodes.len() > 3 {
                    format!(" and {} more", nodes.len() - 3)
                } else {
                    String::new()
                };
                format!(
                    "waiting: queued {waited_secs}s, past the starvation limit, so it holds {} \
                     {}{more} for its gang ({needs}); other jobs may use only what the gang does \
                     not need there, and it starts once enough running work has finished",
                    plural(nodes.len() as u64, "node"),
                    shown.join(", ")
                )
            }
        }
    }
}

/// The free capacity in the dimensions the gang needs ("nothing" rendered as "no ...").
fn show_free(free: &Resources, needs: &Resources) -> String {
    let parts: Vec<String> = Dimension::ALL
        .into_iter()
        .filter(|&d| needs.get(d) > 0)
        .map(|d| free.show(d))
        .collect();
    if parts.is_empty() {
        free.to_string()
    } else {
        parts.join(", ")
    }
}

fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        noun.to_string()
    } else {
        format!("{noun}s")
    }
}
