//! Hand-checked scenarios for `rill-bench replay`, run through the binary.
//!
//! Each expected output was derived by hand from the rules in docs/design.md ("Time
//! semantics") and the replay contract; the reasoning is in the comment above it. Rows at
//! the same emission time may come in any order between keys (emission order leaves it
//! open, and `--shards` changes it), so comparisons sort by key within runs of rows with equal
//! `emit_time`, keeping each key's order. Times in the comments: `v@t (clock c)` is a
//! record of value v and event time t arriving at c; `#i` a pane index.

mod common;

use std::collections::BTreeMap;

use common::replay::*;

#[test]
fn default_trigger_drops_late_records_to_late_output() {
    let expected = "a,0,10,4,ON_TIME,0,true,20,+
                    a,10,20,5,ON_TIME,0,true,30,+
                    b,10,20,2,ON_TIME,0,true,30,+";
    let input = || Input::File(example("late_data.csv"));
    let late = temp_path("late.csv");
    check(replay(input(), "--window fixed:10", Some(&late)), expected);
    assert_eq!(take_late(&late), "event,a,4,7,25\nevent,b,6,3,31\n");
    let args = "--window fixed:10 --lateness 10";
    check(replay(input(), args, Some(&late)), expected);
    assert_eq!(take_late(&late), "event,b,6,3,31\n");
}

// Keys holding a comma or a quote are CSV-quoted in the input, the panes and the late
// output. fixed:10, default trigger: watermark 10 (clock 4) closes [0,10) for every key;
// "x,y" 7@3 arrives after it and goes to the late output.
#[test]
fn quoted_keys_with_commas_pass_through() {
    let input = "event,\"a,b\",1,5,1\nevent,\"say \"\"hi\"\"\",2,5,2\nevent,c,4,5,3\n\
                 watermark,10,4\nevent,\"x,y\",7,3,5\n";
    let expected = "\"a,b\",0,10,1,ON_TIME,0,true,4,+
                    c,0,10,4,ON_TIME,0,true,4,+
                    \"say \"\"hi\"\"\",0,10,2,ON_TIME,0,true,4,+";
    let late = temp_path("late.csv");
    let out = ok(replay(Input::Text(input), "--window fixed:10", Some(&late)));
    assert_panes(&out, expected);
    let keys: Vec<String> = rows(&out).iter().map(|r| field(r, 0)).collect();
    assert!(keys.contains(&"a,b".to_string()), "{keys:?}");
    assert_eq!(take_late(&late), "event,\"x,y\",7,3,5\n");
}

const LATENESS_INPUT: &str = "
event,k,1,2,100
event,k,2,4,101
watermark,10,110
event,k,5,6,120
event,k,7,8,130
event,k,4,15,135
watermark,25,140
event,k,9,1,150
watermark,40,160
";

// fixed:10, lateness 20 ([0,10) GC at 30, [10,20) at 40), late=count(1):
// - watermark 10 (110): [0,10) ON_TIME 3 #0, not last (GC later).
// - 5@6 (120), 7@8 (130): late but live -> a LATE pane each (#1, #2).
// - 4@15 (135) -> [10,20); watermark 25 (140): its ON_TIME pane 4.
// - 9@1 (150): watermark 25 < 30 -> LATE 9 #3.
// - watermark 40 (160): both GC'd with nothing new since their last pane -> no final
//   pane (FIRE_IF_NON_EMPTY), so nothing here is marked last.
// repeat(watermark) (Beam's default trigger) gives the same panes: it fires at the end
// of the window and, being past it, again at each late record.
// With late=count(2): 5 and 7 make one LATE pane 12 at 130; 9 waits, and the GC at
// watermark 40 fires it as the final LATE pane, marked last; [10,20) has nothing new.
#[test]
fn allowed_lateness_gives_on_time_then_late_panes() {
    let run = |t: &str| {
        text(
            LATENESS_INPUT,
            &format!("--window fixed:10 --lateness 20 --trigger {t}"),
        )
    };
    let late_1 = "k,0,10,3,ON_TIME,0,false,110,+
                  k,0,10,5,LATE,1,false,120,+
                  k,0,10,7,LATE,2,false,130,+
                  k,10,20,4,ON_TIME,0,false,140,+
                  k,0,10,9,LATE,3,false,150,+";
    check(run("watermark(late=count(1))"), late_1);
    check(run("repeat(watermark)"), late_1);
    let expected = "k,0,10,3,ON_TIME,0,false,110,+
                    k,0,10,12,LATE,1,false,130,+
                    k,10,20,4,ON_TIME,0,false,140,+
                    k,0,10,9,LATE,2,true,160,+";
    check(run("watermark(late=count(2))"), expected);
}

// fixed:10, lateness 100: a window that only gets late records. The default trigger is
// ready as soon as 3@5 arrives past the end: one LATE pane (not holding), which finishes
// the trigger -> last; 4@6 is then dropped (closed). With late=count(1) the first record
// fires the on-time firing (LATE, not last) and the second a late firing.
#[test]
fn window_with_only_late_data_fires_late_panes() {
    let input = "watermark,50,1\nevent,k,3,5,2\nevent,k,4,6,3\n";
    let expected = "k,0,10,3,LATE,0,true,2,+";
    check(text(input, "--window fixed:10 --lateness 100"), expected);
    let args = "--window fixed:10 --lateness 100 --trigger watermark(late=count(1))";
    let expected = "k,0,10,3,LATE,0,false,2,+
                    k,0,10,4,LATE,1,false,3,+";
    check(text(input, args), expected);
}

// fixed:100, early=processing(delay=10), repeated as an early trigger:
// - 1@5 (clock 0) sets a deadline at 10; 2 (4) joins the pane; `advance,10` fires it (due
//   at or before the clock): EARLY 3 at 10.
// - 3 (15) sets 25; 4 arrives at 25, when that deadline is due: EARLY 3 at 25 first,
//   then 4 joins the next pane and sets 35.
// - watermark 100 (30): ON_TIME 4, closed and GC'd -> last (the 35 deadline is moot).
// - 16@150 (40) -> [100,200), deadline 50 never comes (the clock stops at 40): the end of
//   input fires its ON_TIME pane at 40.
#[test]
fn early_firings_after_processing_delay() {
    let input = "event,k,1,5,0\nevent,k,2,6,4\nadvance,10\nevent,k,3,7,15\n\
                 event,k,4,8,25\nwatermark,100,30\nevent,k,16,150,40\n";
    let args = "--window fixed:100 --trigger watermark(early=processing(delay=10))";
    let expected = "k,0,100,3,EARLY,0,false,10,+
                    k,0,100,3,EARLY,1,false,25,+
                    k,0,100,4,ON_TIME,2,true,30,+
                    k,100,200,16,ON_TIME,0,true,40,+";
    check(text(input, args), expected);
}

// align=10, offset=3: deadlines on the grid 3, 13, 23, 33, ...
// - 1 (clock 5) -> deadline 13; 2 (9) joins; advance 13: EARLY 3 at 13.
// - 4 (14) -> deadline 23; the clock jumps to 30: EARLY 4 at 30; 8 (30) -> deadline 33.
// - watermark 1000 (31): ON_TIME 8, last.
// As the whole trigger (fires once): EARLY 3 at 13, last; 4 and 8 are dropped (closed).
#[test]
fn early_firings_aligned_processing_time() {
    let input = "event,k,1,100,5\nevent,k,2,110,9\nadvance,13\nevent,k,4,120,14\n\
                 event,k,8,130,30\nwatermark,1000,31\n";
    let run = |t: &str| text(input, &format!("--window fixed:1000 --trigger {t}"));
    let early = "watermark(early=processing(align=10, offset=3))";
    let expected = "k,0,1000,3,EARLY,0,false,13,+
                    k,0,1000,4,EARLY,1,false,30,+
                    k,0,1000,8,ON_TIME,2,true,31,+";
    check(run(early), expected);
    check(
        run("processing(align=10, offset=3)"),
        "k,0,1000,3,EARLY,0,true,13,+",
    );
}

// global, repeat(count(2)): k fires EARLY at its 2nd (1+2) and 4th (4+8) record; 16 and
// j's 10 wait for the end of input, where the watermark reaches +inf: a final pane each,
// ON_TIME (the windows held), last, at the last clock value 6.
#[test]
fn repeated_count_on_global_window() {
    let input = "event,k,1,0,1\nevent,k,2,0,2\nevent,j,10,0,3\nevent,k,4,0,4\n\
                 event,k,8,0,5\nevent,k,16,0,6\n";
    let expected = "k,-inf,+inf,3,EARLY,0,false,2,+
                    k,-inf,+inf,12,EARLY,1,false,5,+
                    j,-inf,+inf,10,ON_TIME,0,true,6,+
                    k,-inf,+inf,16,ON_TIME,2,true,6,+";
    check(
        text(input, "--window global --trigger repeat(count(2))"),
        expected,
    );
}

// punctuation.csv, fixed:100. `punctuation` fires once: k[0,100) at the punctuation 2
// (EARLY 1+2, last, closed; 4 is dropped), k[100,200) at 8 (16 dropped). m never sees a
// punctuation: its pane comes at GC (watermark 300, clock 6), ON_TIME, last.
// `repeat(punctuation)` keeps the windows open: 4 and 16 fire at GC as ON_TIME #1, last.
#[test]
fn punctuation_and_repeated_punctuation() {
    let args = |t: &str| format!("--window fixed:100 --trigger {t}");
    let expected = "k,0,100,3,EARLY,0,true,2,+
                    k,100,200,8,EARLY,0,true,4,+
                    m,0,100,5,ON_TIME,0,true,6,+";
    check(file("punctuation.csv", &args("punctuation")), expected);
    let expected = "k,0,100,3,EARLY,0,false,2,+
                    k,100,200,8,EARLY,0,false,4,+
                    k,0,100,4,ON_TIME,1,true,6,+
                    k,100,200,16,ON_TIME,1,true,6,+
                    m,0,100,5,ON_TIME,0,true,6,+";
    check(
        file("punctuation.csv", &args("repeat(punctuation)")),
        expected,
    );
}

// triggers.csv on the global window: 1 (clock 10), 2 (20, punct), 4 (30), 8 (40),
// 16 (50, punct), 32 (60), advance 100.
// - all(count(3), punctuation): both ready at the 3rd record (30): 7, last.
// - any(count(3), punctuation): the punctuation at 20: 3, last.
// - repeat(any(...)): 3 at 20; reset; 4, 8, 16 (count 3 and punct) at 50: 28; 32 fires
//   at the end (clock 100) as the ON_TIME final pane.
// - seq(count(2), punctuation): count(2) at 20 (3); then only the punctuation child sees
//   records, and the punctuation at 50 fires 4+8+16 and ends the sequence: last.
// - until(repeat(count(2)), count(5)): 3 at 20, 12 at 40; the 5th record (50) fires the
//   until trigger: 16, last.
// - all(count(2), processing(delay=25)): deadline 35; count ready at 20; the clock jumps
//   to 40 before 8 arrives: 1+2+4 at 40, last.
#[test]
fn composite_triggers() {
    let cases = [
        "all(count(3), punctuation) => k,-inf,+inf,7,EARLY,0,true,30,+",
        "any(count(3), punctuation) => k,-inf,+inf,3,EARLY,0,true,20,+",
        "repeat(any(count(3), punctuation)) => k,-inf,+inf,3,EARLY,0,false,20,+
         k,-inf,+inf,28,EARLY,1,false,50,+
         k,-inf,+inf,32,ON_TIME,2,true,100,+",
        "seq(count(2), punctuation) => k,-inf,+inf,3,EARLY,0,false,20,+
         k,-inf,+inf,28,EARLY,1,true,50,+",
        "until(repeat(count(2)), count(5)) => k,-inf,+inf,3,EARLY,0,false,20,+
         k,-inf,+inf,12,EARLY,1,false,40,+
         k,-inf,+inf,16,EARLY,2,true,50,+",
        "all(count(2), processing(delay=25)) => k,-inf,+inf,7,EARLY,0,true,40,+",
    ];
    for case in cases {
        let (trigger, expected) = case.split_once(" => ").unwrap();
        eprintln!("trigger {trigger}");
        let args = format!("--window global --trigger {trigger}");
        check(file("triggers.csv", &args), expected);
    }
}

// accumulation.csv, fixed:10, lateness 20, watermark(early=count(2), late=count(1)):
// - a: 1, 2 -> EARLY at 2; 3 waits; watermark 10 (4): ON_TIME; 4@5 (5): LATE at once.
// - b: 10 -> ON_TIME at 4 (one record, no early pane).
// - a 5@15 -> [10,20); watermark 40 (7) passes its end and GC time at once: one ON_TIME
//   pane, last. [0,10) is GC'd at 30 with nothing new: no pane.
// Discarding: 3, 3, 4. Accumulating: 3, 6, 10. Retracting: accumulating values, each
// after the retraction of the previous one, the retraction carrying the new pane's
// timing, index, last flag and emission time.
#[test]
fn accumulation_modes_on_the_same_input() {
    let run = |mode: &str| {
        let trigger = "watermark(early=count(2), late=count(1))";
        let args =
            format!("--window fixed:10 --lateness 20 --trigger {trigger} --accumulation {mode}");
        ok(file("accumulation.csv", &args))
    };
    let discarding = run("discarding");
    let expected = "a,0,10,3,EARLY,0,false,2,+
                    a,0,10,3,ON_TIME,1,false,4,+
                    b,0,10,10,ON_TIME,0,false,4,+
                    a,0,10,4,LATE,2,false,5,+
                    a,10,20,5,ON_TIME,0,true,7,+";
    assert_panes(&discarding, expected);
    let accumulating = run("accumulating");
    let expected = "a,0,10,3,EARLY,0,false,2,+
                    a,0,10,6,ON_TIME,1,false,4,+
                    b,0,10,10,ON_TIME,0,false,4,+
                    a,0,10,10,LATE,2,false,5,+
                    a,10,20,5,ON_TIME,0,true,7,+";
    assert_panes(&accumulating, expected);
    let retracting = run("retracting");
    let expected = "a,0,10,3,EARLY,0,false,2,+
                    a,0,10,3,ON_TIME,1,false,4,-
                    a,0,10,6,ON_TIME,1,false,4,+
                    b,0,10,10,ON_TIME,0,false,4,+
                    a,0,10,6,LATE,2,false,5,-
                    a,0,10,10,LATE,2,false,5,+
                    a,10,20,5,ON_TIME,0,true,7,+";
    assert_panes(&retracting, expected);
    // A downstream signed sum over retracting panes ends at the windows' last values,
    // which (nothing was dropped) are also what the discarding panes add up to.
    let expected = totals(&[("a", 15), ("b", 10)]);
    assert_eq!(signed_sums(&retracting), expected);
    assert_eq!(last_values(&accumulating), expected);
    assert_eq!(last_values(&retracting), expected);
    assert_eq!(signed_sums(&discarding), expected);
}

// sessions.csv, session:10, lateness 20, watermark(late=count(1)):
// - u: 1@0 and 2@5 merge into [0,15); 4@22 is [22,32). v: 1@80 is [80,90). w: 1@20 is
//   [20,30). Watermark 33 (clock 5): ON_TIME panes u[0,15) 3, u[22,32) 4, w[20,30) 1.
// - u 8@14 (6): [14,24) overlaps both u sessions (still live: GC 35 and 52) -> a new
//   merged window [0,32), past its end and not holding: LATE #0 (discarding: 8 only).
// - w 2@35 (6): [35,45), on time. w 4@28 (7): [28,38) bridges w[20,30) (on-time pane
//   done) and [35,45) -> [20,45), not past its end: its on-time firing is pending again
//   and it holds. u 16@40 (7): [40,50).
// - Watermark 106 (8): w[20,45) and u[40,50) pass end and GC at once: one ON_TIME pane
//   each, last (w: 2+4 discarding); u[0,32) GC'd with nothing new; v[80,90) ON_TIME 1.
// - v 2@75 (9): its own [75,85) is past GC (105), but it bridges into live v[80,90)
//   (GC 110): kept, merged [75,90), LATE 2. v 4@60 (10): [60,70) alone, past GC:
//   dropped to the late output. The end of input finds nothing new.
// Retracting: merged windows' first panes retract the absorbed windows' last values.
#[test]
fn session_windows_merge_and_late_records_bridge() {
    let late = temp_path("late.csv");
    let run = |mode: &str| {
        let trigger = "watermark(late=count(1))";
        let args =
            format!("--window session:10 --lateness 20 --trigger {trigger} --accumulation {mode}");
        ok(replay(
            Input::File(example("sessions.csv")),
            &args,
            Some(&late),
        ))
    };
    let expected = "u,0,15,3,ON_TIME,0,false,5,+
                    u,22,32,4,ON_TIME,0,false,5,+
                    w,20,30,1,ON_TIME,0,false,5,+
                    u,0,32,8,LATE,0,false,6,+
                    u,40,50,16,ON_TIME,0,true,8,+
                    v,80,90,1,ON_TIME,0,false,8,+
                    w,20,45,6,ON_TIME,0,true,8,+
                    v,75,90,2,LATE,0,false,9,+";
    assert_panes(&run("discarding"), expected);
    assert_eq!(take_late(&late), "event,v,4,60,10\n");
    let retracting = run("retracting");
    assert_eq!(take_late(&late), "event,v,4,60,10\n");
    let expected = "u,0,15,3,ON_TIME,0,false,5,+
                    u,22,32,4,ON_TIME,0,false,5,+
                    w,20,30,1,ON_TIME,0,false,5,+
                    u,0,15,3,LATE,0,false,6,-
                    u,22,32,4,LATE,0,false,6,-
                    u,0,32,15,LATE,0,false,6,+
                    u,40,50,16,ON_TIME,0,true,8,+
                    v,80,90,1,ON_TIME,0,false,8,+
                    w,20,30,1,ON_TIME,0,true,8,-
                    w,20,45,7,ON_TIME,0,true,8,+
                    v,80,90,1,LATE,0,false,9,-
                    v,75,90,3,LATE,0,false,9,+";
    assert_panes(&retracting, expected);
    let expected = totals(&[("u", 31), ("v", 3), ("w", 7)]);
    assert_eq!(signed_sums(&retracting), expected);
}

// session:10, early=processing(delay=10): 1@0 (clock 2) sets a deadline at 12 in
// [0,10); 2@12 (5) opens [12,22) with 15; 4@8 (8) bridges them into [0,22), whose merged
// trigger keeps the earliest deadline, 12: `advance,13` fires EARLY 1+2+4 (with 15
// nothing would fire before 20). The end of input gives the on-time pane even though
// nothing arrived since (discarding: 0), last, at the last clock value 20.
// Retracting, early=count(1): 1@0 fires [0,10) at once; 2@5 extends it to [0,15), a new
// window whose first pane retracts [0,10)'s 1 (with the new pane's timing and index);
// the end of input repeats the value as the on-time pane.
#[test]
fn merged_sessions_merge_trigger_state_and_retract() {
    let input = "event,s,1,0,2\nevent,s,2,12,5\nevent,s,4,8,8\nadvance,13\nadvance,20\n";
    let args = "--window session:10 --trigger watermark(early=processing(delay=10))";
    let expected = "s,0,22,7,EARLY,0,false,13,+
                    s,0,22,0,ON_TIME,1,true,20,+";
    check(text(input, args), expected);
    let input = "event,s,1,0,1\nevent,s,2,5,2\n";
    let args = "--window session:10 --trigger watermark(early=count(1)) --accumulation retracting";
    let expected = "s,0,10,1,EARLY,0,false,1,+
                    s,0,10,1,EARLY,0,false,2,-
                    s,0,15,3,EARLY,0,false,2,+
                    s,0,15,3,ON_TIME,1,true,2,-
                    s,0,15,3,ON_TIME,1,true,2,+";
    check(text(input, args), expected);
}

// sliding:10,5: t=3 is in [-5,5) and [0,10); t=7 in [0,10), [5,15); t=12 in [5,15),
// [10,20). Watermark 10 (clock 4) closes [-5,5) (1) and [0,10) (1+2), in end order.
// 8@9 then belongs to the GC'd [0,10) and the live [5,15): kept there only, not late;
// 16@2 belongs to GC'd windows only: dropped to the late output. Watermark 100 (clock 5)
// closes [5,15) (2+4+8) and [10,20) (4).
#[test]
fn sliding_windows() {
    let input = "event,k,1,3,1\nevent,k,2,7,2\nevent,k,4,12,3\nwatermark,10,4\n\
                 event,k,8,9,4\nevent,k,16,2,4\nwatermark,100,5\n";
    let late = temp_path("late.csv");
    let run = replay(Input::Text(input), "--window sliding:10,5", Some(&late));
    let expected = "k,-5,5,1,ON_TIME,0,true,4,+
                    k,0,10,3,ON_TIME,0,true,4,+
                    k,5,15,14,ON_TIME,0,true,5,+
                    k,10,20,4,ON_TIME,0,true,5,+";
    check(run, expected);
    assert_eq!(take_late(&late), "event,k,16,2,4\n");
}

// count:3: k's records 0-2 fill [0,3), which ends at its 3rd record (clock 3): ON_TIME,
// last. j's one record and k's records 3-4 are partial windows, fired when the input ends
// (clock 6). Bounds are ordinals.
// sliding-count:4,2 (values 1, 2, 4, 8, 16, 32): record k is in [e-4,e), e even,
// e-4 <= k < e. [-2,2) ends at record 1 (1+2), [0,4) at record 3 (15), [2,6) at record
// 5 (4+8+16+32); [4,8) (16+32) is partial, fired at the end.
#[test]
fn count_and_sliding_count_windows() {
    let input = "event,k,1,0,1\nevent,k,2,0,2\nevent,k,3,0,3\nevent,j,10,0,4\n\
                 event,k,4,0,5\nevent,k,5,0,6\n";
    let expected = "k,0,3,6,ON_TIME,0,true,3,+
                    j,0,3,10,ON_TIME,0,true,6,+
                    k,3,6,9,ON_TIME,0,true,6,+";
    check(text(input, "--window count:3"), expected);
    let input = "event,k,1,0,1\nevent,k,2,0,2\nevent,k,4,0,3\nevent,k,8,0,4\n\
                 event,k,16,0,5\nevent,k,32,0,6\n";
    let expected = "k,-2,2,3,ON_TIME,0,true,2,+
                    k,0,4,15,ON_TIME,0,true,4,+
                    k,2,6,60,ON_TIME,0,true,6,+
                    k,4,8,48,ON_TIME,0,true,6,+";
    check(text(input, "--window sliding-count:4,2"), expected);
}

// count:1: each record fills its own window; it is added before the window ends (the
// record ends it), so the window holds and its pane is on time, as for any count window
// (docs/windows.md: "a window ends when its last record arrives (its pane is on time and
// last)"). sliding-count:3,1 (values 1, 2, 4): [-2,1) holds record 0 only, [-1,2) 0-1,
// [0,3) 0-2, each ending at its last record; [1,4) and [2,5) are partial at the end.
#[test]
fn single_record_count_windows_are_on_time() {
    let expected = "k,0,1,5,ON_TIME,0,true,1,+
                    k,1,2,7,ON_TIME,0,true,2,+";
    check(
        text("event,k,5,0,1\nevent,k,7,0,2\n", "--window count:1"),
        expected,
    );
    let input = "event,k,1,0,1\nevent,k,2,0,2\nevent,k,4,0,3\n";
    let expected = "k,-2,1,1,ON_TIME,0,true,1,+
                    k,-1,2,3,ON_TIME,0,true,2,+
                    k,0,3,7,ON_TIME,0,true,3,+
                    k,1,4,6,ON_TIME,0,true,3,+
                    k,2,5,4,ON_TIME,0,true,3,+";
    check(text(input, "--window sliding-count:3,1"), expected);
}

// fixed:10: [0,10) holds 5, -3, 7 and [10,20) holds 2; one watermark closes both.
#[test]
fn min_max_count_aggregates() {
    let input = "event,k,5,1,1\nevent,k,-3,2,2\nevent,k,7,3,3\nevent,k,2,12,4\nwatermark,20,5\n";
    for case in ["sum 9 2", "count 3 1", "min -3 2", "max 7 2"] {
        let [aggregate, a, b]: [&str; 3] = case.split(' ').collect::<Vec<_>>().try_into().unwrap();
        let run = text(input, &format!("--window fixed:10 --aggregate {aggregate}"));
        let expected = format!("k,0,10,{a},ON_TIME,0,true,5,+\nk,10,20,{b},ON_TIME,0,true,5,+");
        check(run, &expected);
    }
}

// HH:MM:SS.mmm in, HH:MM:SS.mmm out (read from stdin). fixed:1s,offset=250ms: 1.250 and
// 1.999 are in [1.250,2.250), 2.300 in [2.250,3.250), 01:59:59.900 in
// [01:59:59.250,02:00:00.250). Watermark 2.250 (clock 3.000) closes the first; the end
// of input closes the others at the last clock value 3.000.
#[test]
fn clock_millis_format_round_trips() {
    let input = "event,k,1,00:00:01.250,00:00:02\n\
                 event,k,2,00:00:01.999,00:00:02.500\n\
                 event,k,4,00:00:02.300,00:00:02.600\n\
                 event,h,7,01:59:59.900,00:00:02.600\n\
                 watermark,00:00:02.250,00:00:03\n";
    let run = replay(Input::Stdin(input), "--window fixed:1s,offset=250ms", None);
    let expected = "k,00:00:01.250,00:00:02.250,3,ON_TIME,0,true,00:00:03.000,+
                    h,01:59:59.250,02:00:00.250,7,ON_TIME,0,true,00:00:03.000,+
                    k,00:00:02.250,00:00:03.250,4,ON_TIME,0,true,00:00:03.000,+";
    check(run, expected);
}

const README_ARGS: &str = "--window fixed:2m --lateness 5m \
    --trigger watermark(early=processing(delay=1m), late=count(1)) --accumulation retracting";

// The README's command on team_scores.csv (HH:MM:SS in and out).
// - blue 7 (12:01:30) opens [12:00,12:02), deadline 12:02:30; blue 5 joins; red 2
//   (12:02:20) opens red's, deadline 12:03:20.
// - 12:02:30: blue EARLY 12. 12:03:50: red's deadline has passed: EARLY 2; blue 3
//   opens [12:02,12:04), deadline 12:04:50; blue 4 joins.
// - watermark 12:02:40 (12:04:30): ON_TIME for both [12:00,12:02) (same value, retracted
//   first). 12:05:00: blue [12:02,12:04) EARLY 7, then 8 joins (deadline 12:06:00).
// - blue 9@12:01:50 (12:05:40): late, within lateness: LATE 21. red 6 (12:05:45) opens
//   red [12:02,12:04) (deadline 12:06:45).
// - 12:06:10: blue's deadline: EARLY 15; watermark 12:06:00: ON_TIME blue 15, red 6.
// - 12:07:20: red's deadline has nothing to fire after its on-time pane; blue 1@12:07:10
//   opens [12:06,12:08). The end: [12:06,12:08) ON_TIME 1, last; the others are GC'd
//   with nothing new.
#[test]
fn readme_team_scores_example() {
    let expected = "blue,12:00:00,12:02:00,12,EARLY,0,false,12:02:30,+
                    red,12:00:00,12:02:00,2,EARLY,0,false,12:03:50,+
                    blue,12:00:00,12:02:00,12,ON_TIME,1,false,12:04:30,-
                    blue,12:00:00,12:02:00,12,ON_TIME,1,false,12:04:30,+
                    red,12:00:00,12:02:00,2,ON_TIME,1,false,12:04:30,-
                    red,12:00:00,12:02:00,2,ON_TIME,1,false,12:04:30,+
                    blue,12:02:00,12:04:00,7,EARLY,0,false,12:05:00,+
                    blue,12:00:00,12:02:00,12,LATE,2,false,12:05:40,-
                    blue,12:00:00,12:02:00,21,LATE,2,false,12:05:40,+
                    blue,12:02:00,12:04:00,7,EARLY,1,false,12:06:10,-
                    blue,12:02:00,12:04:00,15,EARLY,1,false,12:06:10,+
                    blue,12:02:00,12:04:00,15,ON_TIME,2,false,12:06:10,-
                    blue,12:02:00,12:04:00,15,ON_TIME,2,false,12:06:10,+
                    red,12:02:00,12:04:00,6,ON_TIME,0,false,12:06:10,+
                    blue,12:06:00,12:08:00,1,ON_TIME,0,true,12:07:20,+";
    check(file("team_scores.csv", README_ARGS), expected);
}

// fixed:10, lateness 5 ([0,10) GC at 15), early=count(2), late=count(1). 1, 2 fire EARLY
// 3; 4 waits. Watermark 22 passes [0,10)'s end and GC time at once: exactly one pane,
// ON_TIME 4, last. [10,20) only passes its end: ON_TIME 8, not last; its GC at the end of
// input has nothing new.
// With early=count(1) every record fires early; the jump still gives the on-time pane
// (empty: the sum's identity 0), once, last; [10,20)'s on-time pane is empty too.
#[test]
fn watermark_past_end_and_gc_fires_once() {
    let input = "event,k,1,1,1\nevent,k,2,2,2\nevent,k,4,3,3\nevent,k,8,12,4\nwatermark,22,5\n";
    let args = |early: &str| {
        format!("--window fixed:10 --lateness 5 --trigger watermark(early={early},late=count(1))")
    };
    let expected = "k,0,10,3,EARLY,0,false,2,+
                    k,0,10,4,ON_TIME,1,true,5,+
                    k,10,20,8,ON_TIME,0,false,5,+";
    check(text(input, &args("count(2)")), expected);
    let expected = "k,0,10,1,EARLY,0,false,1,+
                    k,0,10,2,EARLY,1,false,2,+
                    k,0,10,4,EARLY,2,false,3,+
                    k,10,20,8,EARLY,0,false,4,+
                    k,0,10,0,ON_TIME,3,true,5,+
                    k,10,20,0,ON_TIME,1,false,5,+";
    check(text(input, &args("count(1)")), expected);
}

/// A deterministic pseudo-random sequence (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005);
        self.0 = self.0.wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

// Property: the shard count changes at most the order of rows between keys. Inputs with
// early (processing-time), on-time, late and merged panes, retractions and drops.
#[test]
fn shard_count_does_not_change_the_rows() {
    // Mostly ascending event times with jitter, watermarks trailing by 60.
    let mut rng = Lcg(7);
    let mut input = String::new();
    for i in 0..60i64 {
        let (key, value) = (rng.below(5), 1 + rng.below(9));
        let (t, arrival) = (i * 20 - rng.below(150) as i64, i * 10);
        input.push_str(&format!("event,k{key},{value},{t},{arrival}\n"));
        if i % 6 == 5 {
            input.push_str(&format!("watermark,{},{}\n", i * 20 - 60, i * 10 + 5));
        }
    }
    let generated = temp_path("shards.csv");
    std::fs::write(&generated, &input).unwrap();
    let fixed = "--window fixed:100 --lateness 100 --accumulation retracting \
                 --trigger watermark(early=processing(delay=30), late=count(1))";
    let sessions = "--window session:10 --lateness 20 --accumulation retracting \
                    --trigger watermark(late=count(1))";
    let cases = [
        (generated.clone(), fixed),
        (generated.clone(), "--window sliding:100,30 --aggregate max"),
        (example("sessions.csv"), sessions),
        (example("team_scores.csv"), README_ARGS),
    ];
    for (path, args) in cases {
        let run = |shards: &str| {
            let args = format!("{args} --shards {shards}");
            ok(replay(Input::File(path.clone()), &args, None))
        };
        let (one, three) = (run("1"), run("3"));
        assert!(rows(&one).len() > 3, "{path:?}: too few rows to compare");
        assert_eq!(per_key(&one), per_key(&three), "{path:?} {args}");
    }
    std::fs::remove_file(&generated).ok();
}

/// The final rows without their emission time, sorted.
fn final_rows(stdout: &str) -> Vec<String> {
    let mut out: Vec<String> = rows(stdout)
        .into_iter()
        .filter(|r| field(r, 6) == "true")
        .map(|r| {
            let mut f = common::fields(&r);
            f.remove(7);
            f.join(",")
        })
        .collect();
    out.sort();
    out
}

/// What every final row should be, from scratch: per key, fixed windows of 100 or
/// sessions with a gap of 50, each with its sum, one ON_TIME pane marked last.
fn oracle(events: &[(String, i64, i64)], session: bool) -> Vec<String> {
    let mut by_key: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for (k, v, t) in events {
        by_key.entry(k).or_default().push((*t, *v));
    }
    let mut out = Vec::new();
    for (key, mut list) in by_key {
        list.sort();
        let mut windows: Vec<(i64, i64, i64)> = Vec::new();
        for (t, v) in list {
            let (start, end) = match session {
                true => (t, t + 50),
                false => (t - t % 100, t - t % 100 + 100),
            };
            match windows.last_mut() {
                Some(w) if session && start < w.1 => (w.1, w.2) = (w.1.max(end), w.2 + v),
                Some(w) if !session && w.0 == start => w.2 += v,
                _ => windows.push((start, end, v)),
            }
        }
        for (s, e, sum) in windows {
            out.push(format!("{key},{s},{e},{sum},ON_TIME,0,true,+"));
        }
    }
    out.sort();
    out
}

// Property: under a perfect watermark no record is late, so with the default trigger
// every window fires exactly one ON_TIME pane, marked last, holding its whole sum,
// whatever the arrival order; only emission times change. Arrival times are re-assigned
// increasing in each new order.
#[test]
fn perfect_watermark_final_rows_ignore_arrival_order() {
    let mut rng = Lcg(42);
    let events: Vec<(String, i64, i64)> = (0..40)
        .map(|_| {
            let key = format!("k{}", rng.below(4));
            (key, 1 + rng.below(50) as i64, rng.below(1000) as i64)
        })
        .collect();
    for (window, session) in [("fixed:100", false), ("session:50", true)] {
        let expected = oracle(&events, session);
        let mut order: Vec<usize> = (0..events.len()).collect();
        for round in 0..4 {
            if round > 0 {
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
            }
            let input: String = order
                .iter()
                .enumerate()
                .map(|(arrival, &i)| {
                    let (k, v, t) = &events[i];
                    format!("event,{k},{v},{t},{}\n", arrival + 1)
                })
                .collect();
            let args = format!("--window {window} --watermark perfect");
            let out = ok(text(&input, &args));
            assert_eq!(final_rows(&out), expected, "{window}, round {round}");
        }
    }
}

fn assert_rejected(run: Run, needle: &str) {
    assert_ne!(run.code, Some(0), "accepted; stderr: {}", run.stderr);
    assert!(run.code.is_some(), "killed by a signal: {}", run.stderr);
    assert_eq!(run.stdout, "", "stdout must be empty");
    let err = &run.stderr;
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
}

#[test]
fn malformed_rows_are_reported_by_line() {
    // Comments and blank lines count: the bad value is on line 4.
    let bad_value = "# a log\nevent,k,1,0,1\n\nevent,k,x,0,2\n";
    assert_rejected(text(bad_value, "--window fixed:10"), "line 4");
    let run = replay(Input::Stdin(bad_value), "--window fixed:10", None);
    assert_rejected(run, "line 4");
    let cases = [
        ("event,k,1,0,5\nevent,k,2,0,3\n", "line 2"),
        ("event,k,1,0,1\nwatermark,5\n", "line 2"),
        ("evnt,k,1,0,1\n", "line 1"),
        ("event,k,1,0,1\nevent,k,1,00:61:00,2\n", "line 2"),
        ("event,k,1,0,1,urgent\n", "line 1"),
        ("event,k,1,0,1\nadvance,later\n", "line 2"),
    ];
    for (input, line) in cases {
        assert_rejected(text(input, "--window fixed:10"), line);
    }
}

#[test]
fn bad_options_are_rejected() {
    for (args, needle) in [
        ("--window fixed:0", "fixed:0"),
        ("--window tumbling:10", "tumbling"),
        ("--window sliding:10,20", "sliding:10,20"),
        ("--window fixed:10 --trigger count(0)", "count(0)"),
        ("--window fixed:10 --trigger watermark(early=)", "--trigger"),
        ("--window fixed:10 --accumulation retract", "retract"),
        ("--window fixed:10 --aggregate avg", "avg"),
        ("--window fixed:10 --watermark bounded:soon", "soon"),
        ("--trigger count(2)", "--window"),
    ] {
        assert_rejected(file("late_data.csv", args), needle);
    }
}
