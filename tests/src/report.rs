//! The benchmark report's parts. Each benchmark measures one [`Section`], prints it as Markdown and
//! writes it as JSON under `target/bench/`; `bench-report` (the last step of `make bench`) gathers
//! the sections into one report, `target/bench/report.md` and `report.json`.
//!
//! A cell is a number or a text. Numbers keep their full value in the JSON; the Markdown rounds them
//! to their column's decimals and marks a number past its column's goal in bold, with a ✗.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The folder the sections and the report are written to: `target/bench`, under `CARGO_TARGET_DIR`
/// when it is set.
pub fn dir() -> PathBuf {
    crate::target_dir().join("bench")
}

/// One benchmark's part of the report.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Section {
    /// Where it goes in the report: lower first.
    pub rank: u32,
    /// Its heading: the section's `##` line in the Markdown.
    pub title: String,
    /// What was measured and how, in Markdown.
    pub about: String,
    /// Its tables, in order.
    pub tables: Vec<Table>,
    /// Findings under the tables, in Markdown: one paragraph each.
    pub notes: Vec<String>,
}

/// A table: its columns and rows of cells.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Table {
    /// Written above it; empty for none.
    pub caption: String,
    /// Its columns, left to right.
    pub columns: Vec<Column>,
    /// Its rows, each a cell per column.
    pub rows: Vec<Vec<Value>>,
}

/// A column: its heading, how its numbers are written, and the goal they are held to.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Column {
    /// Its heading; a goal, when set, is written after it as `(goal ≤ …)` or `(goal ≥ …)`.
    pub name: String,
    /// Written after each number: `ms`, `MB`, `×`, `%`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
    /// Digits after the point in the Markdown; the JSON keeps the full value.
    pub decimals: usize,
    /// Whether its cells are numbers (written right-aligned).
    #[serde(default)]
    pub numeric: bool,
    /// The goal: at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_most: Option<f64>,
    /// The goal: at least this (a throughput, a ratio to a baseline's speed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<f64>,
}

impl Column {
    /// A text column.
    pub fn text(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    /// A number column, written with `decimals` and `unit`.
    pub fn number(name: &str, unit: &str, decimals: usize) -> Self {
        Self {
            name: name.to_owned(),
            unit: unit.to_owned(),
            decimals,
            numeric: true,
            ..Self::default()
        }
    }

    /// The same column, with a goal its numbers should not pass.
    pub fn at_most(mut self, goal: f64) -> Self {
        self.at_most = Some(goal);
        self
    }

    /// The same column, with a goal its numbers should reach.
    pub fn at_least(mut self, goal: f64) -> Self {
        self.at_least = Some(goal);
        self
    }

    /// Its goal as written: `≤ 1.25×`, `≥ 0.5×`.
    pub fn goal(&self) -> Option<String> {
        let unit = self.unit_suffix();
        match (self.at_most, self.at_least) {
            (Some(most), Some(least)) => Some(format!("{least}{unit} to {most}{unit}")),
            (Some(most), None) => Some(format!("≤ {most}{unit}")),
            (None, Some(least)) => Some(format!("≥ {least}{unit}")),
            (None, None) => None,
        }
    }

    fn heading(&self) -> String {
        match self.goal() {
            Some(goal) => format!("{} (goal {goal})", self.name),
            None => self.name.clone(),
        }
    }

    /// The unit as written after a number: `" ms"`, `"×"`.
    pub fn unit_suffix(&self) -> String {
        match self.unit.as_str() {
            "" => String::new(),
            "×" | "%" => self.unit.clone(),
            unit => format!(" {unit}"),
        }
    }

    /// Whether `cell` is a number past this column's goal.
    pub fn misses(&self, cell: &Value) -> bool {
        cell.as_f64().is_some_and(|n| self.misses_number(n))
    }

    /// Whether `n` is past this column's goal.
    pub fn misses_number(&self, n: f64) -> bool {
        self.at_most.is_some_and(|goal| n > goal) || self.at_least.is_some_and(|goal| n < goal)
    }

    /// Of two numbers, the one further from (or less within) the goal.
    pub fn worse(&self, a: f64, b: f64) -> bool {
        if self.at_most.is_none() && self.at_least.is_some() {
            a < b
        } else {
            a > b
        }
    }

    fn cell(&self, cell: &Value) -> String {
        match cell {
            Value::Null => "—".to_owned(),
            Value::String(text) => text.replace('|', "\\|"),
            Value::Number(n) => {
                let n = n.as_f64().unwrap_or(f64::NAN);
                let text = format!("{}{}", thousands(n, self.decimals), self.unit_suffix());
                if self.misses(cell) {
                    format!("**{text}** ✗")
                } else {
                    text
                }
            }
            other => other.to_string(),
        }
    }
}

/// `n` with `decimals`, and a comma between thousands.
fn thousands(n: f64, decimals: usize) -> String {
    let text = format!("{n:.decimals$}");
    let (sign, digits) = text.strip_prefix('-').map_or(("", &*text), |d| ("-", d));
    let (whole, fraction) = digits.split_at(digits.find('.').unwrap_or(digits.len()));
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}{fraction}")
}

impl Table {
    /// An empty table.
    pub fn new(caption: &str, columns: Vec<Column>) -> Self {
        Self {
            caption: caption.to_owned(),
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row: one cell per column, numbers or texts (`serde_json::json!` values).
    pub fn row(&mut self, cells: Vec<Value>) -> &mut Self {
        debug_assert_eq!(cells.len(), self.columns.len(), "{}", self.caption);
        self.rows.push(cells);
        self
    }

    /// A table of a path's hops, in ms: p50, p99, mean, and the share of the end-to-end time.
    pub fn hops(caption: &str) -> Self {
        Self::new(
            caption,
            vec![
                Column::text("hop"),
                Column::number("p50", "ms", 1),
                Column::number("p99", "ms", 1),
                Column::number("mean", "ms", 1),
                Column::number("share", "%", 1),
            ],
        )
    }

    /// Adds hop `name` of a [`Table::hops`] from its samples (ms), each sample one event's; `total`
    /// is the sum of the events' end-to-end times.
    pub fn hop(&mut self, name: &str, samples: &[f64], total: f64) -> &mut Self {
        let sum: f64 = samples.iter().sum();
        self.row(vec![
            Value::from(name),
            Value::from(crate::percentile(samples, 0.5)),
            Value::from(crate::percentile(samples, 0.99)),
            Value::from(sum / samples.len() as f64),
            Value::from(100.0 * sum / total),
        ])
    }

    /// One path's end-to-end p50 and p99 (ms) in a table of their own, the p99 held to `goal_ms`:
    /// the row the report's goals count for the path (its hops table has the split).
    pub fn latency_goal(path: &str, samples: &[f64], goal_ms: f64) -> Self {
        let mut table = Self::new(
            "",
            vec![
                Column::text("path"),
                Column::number("end to end p50", "ms", 1),
                Column::number("end to end p99", "ms", 1).at_most(goal_ms),
            ],
        );
        table.row(vec![
            Value::from(path),
            Value::from(crate::percentile(samples, 0.5)),
            Value::from(crate::percentile(samples, 0.99)),
        ]);
        table
    }

    /// The cells past their column's goal, as (row's first cell, column).
    pub fn misses(&self) -> Vec<(String, String)> {
        let mut misses = Vec::new();
        for row in &self.rows {
            for (column, cell) in self.columns.iter().zip(row) {
                if column.misses(cell) {
                    let name = row.first().map(|c| self.columns[0].cell(c));
                    misses.push((name.unwrap_or_default(), column.name.clone()));
                }
            }
        }
        misses
    }

    /// The table in Markdown, its caption above it.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        if !self.caption.is_empty() {
            out.push_str(&format!("{}\n\n", self.caption));
        }
        let headings: Vec<String> = self.columns.iter().map(Column::heading).collect();
        out.push_str(&format!("| {} |\n", headings.join(" | ")));
        let rules: Vec<&str> = self
            .columns
            .iter()
            .map(|c| if c.numeric { "---:" } else { "---" })
            .collect();
        out.push_str(&format!("|{}|\n", rules.join("|")));
        for row in &self.rows {
            let cells: Vec<String> = self
                .columns
                .iter()
                .zip(row)
                .map(|(c, v)| c.cell(v))
                .collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }
}

impl Section {
    /// A section with no tables or notes yet.
    pub fn new(rank: u32, title: &str, about: &str) -> Self {
        Self {
            rank,
            title: title.to_owned(),
            about: about.to_owned(),
            ..Self::default()
        }
    }

    /// The section in Markdown: its heading, what it measured, its tables and notes.
    pub fn markdown(&self) -> String {
        let mut out = format!("## {}\n\n{}\n\n", self.title, self.about.trim());
        for table in &self.tables {
            out.push_str(&table.markdown());
            out.push('\n');
        }
        for note in &self.notes {
            out.push_str(note.trim());
            out.push_str("\n\n");
        }
        out
    }

    /// Prints the section and writes it to `target/bench/<name>.json` for the report.
    pub fn publish(&self, name: &str) -> Result<()> {
        println!("\n{}", self.markdown());
        let dir = dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("(written to {})", path.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_rounded_grouped_and_marked_past_their_goal() {
        let mut table = Table::new(
            "",
            vec![
                Column::text("function"),
                Column::number("cold start", "ms", 2),
                Column::number("ratio", "×", 2).at_most(1.25),
                Column::number("events / s", "", 0),
            ],
        );
        table.row(vec![json!("a"), json!(7.656), json!(4.9), json!(132588.4)]);
        table.row(vec![json!("b|c"), json!(null), json!(1.2), json!(-1234.0)]);
        let markdown = table.markdown();
        assert!(markdown.contains("| ratio (goal ≤ 1.25×) |"), "{markdown}");
        assert!(
            markdown.contains("| a | 7.66 ms | **4.90×** ✗ | 132,588 |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| b\\|c | — | 1.20× | -1,234 |"),
            "{markdown}"
        );
        assert_eq!(table.misses(), vec![("a".to_owned(), "ratio".to_owned())]);
    }

    #[test]
    fn an_at_least_goal_marks_the_numbers_below_it() {
        let column = Column::number("× baseline", "×", 2).at_least(0.5);
        let mut table = Table::new("", vec![Column::text("path"), column.clone()]);
        table.row(vec![json!("fast"), json!(0.75)]);
        table.row(vec![json!("slow"), json!(0.41)]);
        let markdown = table.markdown();
        assert!(
            markdown.contains("| × baseline (goal ≥ 0.5×) |"),
            "{markdown}"
        );
        assert!(markdown.contains("| slow | **0.41×** ✗ |"), "{markdown}");
        assert!(markdown.contains("| fast | 0.75× |"), "{markdown}");
        assert_eq!(
            table.misses(),
            vec![("slow".to_owned(), "× baseline".to_owned())]
        );
        assert!(
            column.worse(0.41, 0.75),
            "lower is worse against an at-least goal"
        );
        assert!(
            Column::number("p99", "ms", 0)
                .at_most(500.0)
                .worse(900.0, 100.0)
        );
    }

    #[test]
    fn a_section_survives_its_json() {
        let mut section = Section::new(3, "Cold start", "Spawn to first `/next`.");
        let mut table = Table::new("caption", vec![Column::number("x", "MB", 1).at_most(8.0)]);
        table.row(vec![json!(8.5)]);
        section.tables.push(table);
        section.notes.push("A note.".into());
        let text = serde_json::to_string(&section).unwrap();
        let back: Section = serde_json::from_str(&text).unwrap();
        assert_eq!(back.markdown(), section.markdown());
        assert!(back.markdown().contains("**8.5 MB** ✗"));
    }
}
