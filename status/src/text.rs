//! The status document as the tables of `haldir status`.

use crate::sections;
use crate::time::{age_text, utc_text};
use crate::StatusDocument;

/// Left-aligned columns, two spaces apart.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `-` for nothing.
fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The router, its VRRP instances and its virtual servers as tables, then the DR ARP check
/// and the bulk resync (each only when there is something to say).
pub fn render(status: &StatusDocument) -> String {
    let now = status.now_unix;
    let mut out = String::new();
    if let Some(id) = &status.router_id {
        out.push_str(&format!("router {id}\n"));
    }
    if status.instances.is_empty() {
        out.push_str("no VRRP instances\n");
    } else {
        let mut rows = vec![[
            "INSTANCE",
            "INTERFACE",
            "STATE",
            "PRIORITY",
            "MASTER",
            "SINCE",
            "REASON",
        ]
        .map(String::from)
        .to_vec()];
        for i in &status.instances {
            let since = match i.since_unix {
                Some(t) => format!("{} ({} ago)", utc_text(t), age_text(now - t)),
                None => "-".into(),
            };
            let mut state = i.state.as_str().to_owned();
            if i.preemption_held {
                // Waiting for the connection table (bulk resync).
                state.push_str(" (preemption held)");
            }
            if i.handed_over {
                // `haldir handover`: stays backup until cancelled.
                state.push_str(" (handed over)");
            }
            rows.push(vec![
                i.name.clone(),
                i.interface.clone(),
                state,
                i.priority.to_string(),
                or_dash(i.master),
                since,
                or_dash(i.reason.as_ref()),
            ]);
        }
        out.push_str(&table(&rows, ""));
    }
    if !status.virtual_servers.is_empty() {
        out.push('\n');
        if let Some(error) = &status.kernel_error {
            out.push_str(&format!("IPVS table not readable: {error}\n"));
        }
        for vs in &status.virtual_servers {
            out.push_str(&format!(
                "{}  {}{}\n",
                vs.service,
                vs.scheduler,
                if vs.in_kernel {
                    ""
                } else {
                    "  (not in the kernel table)"
                }
            ));
            let mut rows = vec![[
                "REAL SERVER",
                "WEIGHT",
                "KERNEL",
                "ACTIVE",
                "HEALTH",
                "LAST CHECK",
            ]
            .map(String::from)
            .to_vec()];
            for d in &vs.destinations {
                let last = match &d.last_check {
                    None => "-".to_owned(),
                    Some(c) => format!(
                        "{} ({} ago)",
                        c.result,
                        age_text(now - c.at_unix.unwrap_or(now))
                    ),
                };
                rows.push(vec![
                    d.address_text(),
                    d.configured_weight.to_string(),
                    or_dash(d.kernel_weight),
                    d.active_connections.to_string(),
                    d.health.as_str().to_owned(),
                    last,
                ]);
            }
            out.push_str(&table(&rows, "  "));
        }
    }
    out.push_str(&sections::dr_arp_check_text(&status.dr_arp_check, now));
    out.push_str(&sections::bulk_resync_text(&status.bulk_resync, now));
    out.push_str(&sections::announce_text(&status.announce));
    out
}
