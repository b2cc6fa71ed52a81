//! `stratus cluster metrics`: every node's metrics, scraped node by node.

use super::output::Out;
use crate::Client;
use serde::Serialize;
use std::collections::BTreeMap;

/// One series of a node's metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the series lines of a Prometheus text exposition (comments skipped).
/// Returns an error naming the first line it cannot read.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("line {}: cannot read {line:?}", n + 1);
        let (series, value) = line.rsplit_once(' ').ok_or_else(bad)?;
        let value: f64 = value.parse().map_err(|_| bad())?;
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').ok_or_else(bad)?;
                (name, parse_labels(body).ok_or_else(bad)?)
            }
        };
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}

fn parse_labels(body: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

pub async fn show(client: &Client, only: Option<u64>, out: Out) -> anyhow::Result<()> {
    let status = client.cluster_status().await?;
    if let Some(id) = only {
        anyhow::ensure!(
            status.nodes.iter().any(|n| n.id == id),
            "no node {id} in the topology (see `stratus cluster status`)"
        );
    }
    let mut samples = Vec::new();
    let mut text = String::new();
    for node in status
        .nodes
        .iter()
        .filter(|n| only.is_none_or(|id| n.id == id))
    {
        match client.node_metrics(&node.addr).await {
            Ok((_, t)) => {
                samples.extend(parse(&t).map_err(|e| anyhow::anyhow!("node {}: {e}", node.id))?);
                text.push_str(&t);
            }
            Err(e) if only.is_some() => return Err(e.into()),
            Err(e) => eprintln!("node {} ({}): no metrics: {e}", node.id, node.addr),
        }
    }
    if out.is_json() {
        return out.json(&samples);
    }
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_lines_parse_with_escaped_labels() {
        let text = "# HELP x y\n# TYPE x counter\nx{node=\"1\",group=\"a\\\"b\"} 3\nup 1\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "x");
        assert_eq!(s[0].labels["group"], "a\"b");
        assert_eq!(s[0].labels["node"], "1");
        assert_eq!(s[0].value, 3.0);
        assert!(s[1].labels.is_empty());
        assert!(parse("x{node=\"1\" 3").unwrap_err().contains("line 1"));
    }
}
