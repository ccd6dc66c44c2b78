//! What the demo prints: timestamped event lines, section headings, and a row of lights.
//!
//! Plain text, one line at a time, no cursor movement or colours, so that it reads the same in
//! a terminal and in a file. The row of lights is printed again, as a new line, whenever a
//! light changes (changes arriving within a few milliseconds of each other share one row):
//!
//! ```text
//!   1.402s  lights    |*1 ON  40|*2 ON  40|*3 ON  40|x4 ON 100| 5 --    |
//! ```
//!
//! Each cell is a marker, the light's number and its state: `ON  40` (on, 40 %), `off`, or
//! `--` (not joined yet). Markers: `*` changed in this row, `x` decommissioned (its keys are
//! erased: it keeps its last state and can't follow commands any more).

use std::io::Write;
use std::time::Instant;

use crate::command::LightState;

/// Lights per printed row line (more lights continue on the next lines).
pub const ROW_CELLS: usize = 9;

/// Where a light is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Presence {
    /// Not joined yet.
    Waiting,
    /// Joined.
    Member,
    /// Decommissioned.
    Removed,
}

/// The demo's output.
pub struct Display {
    out: Box<dyn Write + Send>,
    start: Instant,
    cells: Vec<(LightState, Presence, bool)>,
    dirty: bool,
    failed: bool,
}

impl Display {
    /// Output to `out`, timestamps counted from now.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out,
            start: Instant::now(),
            cells: Vec::new(),
            dirty: false,
            failed: false,
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> std::time::Duration {
        self.start.elapsed()
    }

    fn write(&mut self, text: &str) {
        // A closed pipe (`| head`) must not stop the demo: later output is dropped.
        if !self.failed && writeln!(self.out, "{text}").is_err() {
            self.failed = true;
        }
        let _ = self.out.flush();
    }

    /// Adds a light (not joined yet) to the row.
    pub fn add_light(&mut self) {
        self.cells
            .push((LightState::default(), Presence::Waiting, false));
    }

    /// Sets a light's state; the row is printed at the next [`flush_row`](Self::flush_row).
    pub fn set_state(&mut self, light: usize, state: LightState) {
        if let Some(c) = self.cells.get_mut(light)
            && c.0 != state
        {
            c.0 = state;
            c.2 = true;
            self.dirty = true;
        }
    }

    /// Sets a light's presence.
    pub fn set_presence(&mut self, light: usize, presence: Presence) {
        if let Some(c) = self.cells.get_mut(light)
            && c.1 != presence
        {
            c.1 = presence;
            c.2 = true;
            self.dirty = true;
        }
    }

    /// The row as text: one line per [`ROW_CELLS`] lights.
    pub fn row_text(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut s = String::from("|");
        for (i, (state, presence, changed)) in self.cells.iter().enumerate() {
            if i > 0 && i % ROW_CELLS == 0 {
                lines.push(std::mem::replace(&mut s, String::from("|")));
            }
            let marker = match (presence, changed) {
                (Presence::Removed, _) => 'x',
                (_, true) => '*',
                _ => ' ',
            };
            let body = match presence {
                Presence::Waiting => "--    ".to_owned(),
                _ => state.to_string(),
            };
            s.push_str(&format!("{marker}{:>2} {body}|", i + 1));
        }
        lines.push(s);
        lines
    }

    /// Prints the row if a light changed since it was last printed.
    pub fn flush_row(&mut self) {
        if self.dirty {
            self.dirty = false;
            for (i, row) in self.row_text().iter().enumerate() {
                if i == 0 {
                    self.line("lights", row);
                } else {
                    self.write(&format!("{:20}{row}", ""));
                }
            }
            for c in &mut self.cells {
                c.2 = false;
            }
        }
    }

    /// Prints the row now.
    pub fn print_row(&mut self) {
        self.dirty = true;
        self.flush_row();
    }

    /// One event line: `  1.234s  who       text`. A pending row is not printed first: it
    /// follows once the burst of changes is over ([`flush_row`](Self::flush_row)).
    pub fn line(&mut self, who: &str, text: &str) {
        let t = self.start.elapsed().as_secs_f64();
        self.write(&format!("{t:7.3}s  {who:<9} {text}"));
    }

    /// A section heading.
    pub fn heading(&mut self, text: &str) {
        self.flush_row();
        self.write("");
        self.write(&format!("== {text}"));
    }

    /// Text without a timestamp (banner, tables).
    pub fn plain(&mut self, text: &str) {
        self.flush_row();
        self.write(text);
    }
}
