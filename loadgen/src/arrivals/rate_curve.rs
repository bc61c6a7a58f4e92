//! A piecewise-linear rate over time: the shape behind ramps and curves.

/// Rate (requests per second) as a function of time (seconds from the
/// start of the phase): linear between points, held flat before the first
/// point and after the last one.
#[derive(Clone, Debug)]
pub(crate) struct RateCurve {
    /// `(at_s, rate_per_s)`, `at_s` non-decreasing (two points at one time
    /// are a step), first one at 0.
    points: Vec<(f64, f64)>,
}

/// One linear piece of a [`RateCurve`], clipped to the phase.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    /// Start, seconds.
    pub start_s: f64,
    /// End, seconds.
    pub end_s: f64,
    /// Rate at the start, requests per second.
    pub start_rate_per_s: f64,
    /// Rate at the end, requests per second.
    pub end_rate_per_s: f64,
}

impl Segment {
    /// Requests the segment asks for (the area under it).
    pub fn area(&self) -> f64 {
        (self.start_rate_per_s + self.end_rate_per_s) / 2.0 * (self.end_s - self.start_s)
    }

    /// The time into the segment at which the area under it reaches
    /// `area` (0 ≤ area ≤ [`Segment::area`]): the inverse of the
    /// cumulative rate, solved in closed form for a linear rate.
    pub fn time_to_area_s(&self, area: f64) -> f64 {
        let length_s = self.end_s - self.start_s;
        if length_s <= 0.0 || area <= 0.0 {
            return 0.0;
        }
        let slope = (self.end_rate_per_s - self.start_rate_per_s) / length_s;
        let r0 = self.start_rate_per_s;
        // Solves r0·τ + slope·τ²/2 = area in the form that stays stable
        // when the slope is zero or the start rate is zero.
        let root = (r0 * r0 + 2.0 * slope * area).max(0.0).sqrt();
        let denominator = r0 + root;
        if denominator <= 0.0 {
            return length_s;
        }
        (2.0 * area / denominator).clamp(0.0, length_s)
    }
}

impl RateCurve {
    /// A curve through `points` (`(at_s, rate_per_s)`, validated by the
    /// caller: sorted, finite, non-negative; equal times make a step). A first point after 0 is
    /// extended back to 0 at its own rate.
    pub fn new(points: &[(f64, f64)]) -> Self {
        let mut owned = Vec::with_capacity(points.len() + 1);
        if let Some(&(at_s, rate)) = points.first()
            && at_s > 0.0
        {
            owned.push((0.0, rate));
        }
        owned.extend_from_slice(points);
        RateCurve { points: owned }
    }

    /// Highest rate anywhere on the curve.
    pub fn peak_per_s(&self) -> f64 {
        self.points.iter().map(|p| p.1).fold(0.0, f64::max)
    }

    /// Rate at `t_s`.
    pub fn rate_at(&self, t_s: f64) -> f64 {
        let after = self.points.partition_point(|p| p.0 <= t_s);
        match (
            after.checked_sub(1).map(|i| self.points[i]),
            self.points.get(after),
        ) {
            (Some((t0, r0)), Some(&(t1, r1))) => r0 + (r1 - r0) * (t_s - t0) / (t1 - t0),
            (Some((_, r)), None) | (None, Some(&(_, r))) => r,
            (None, None) => 0.0,
        }
    }

    /// The linear pieces covering `[0, end_s)`, the last one holding the
    /// final rate until `end_s`.
    pub fn segments(&self, end_s: f64) -> Vec<Segment> {
        let mut segments = Vec::with_capacity(self.points.len());
        for pair in self.points.windows(2) {
            let ((t0, r0), (t1, r1)) = (pair[0], pair[1]);
            if t0 >= end_s {
                break;
            }
            if t1 <= t0 {
                continue; // a step has no width and no area
            }
            let clipped_end_s = t1.min(end_s);
            segments.push(Segment {
                start_s: t0,
                end_s: clipped_end_s,
                start_rate_per_s: r0,
                end_rate_per_s: r0 + (r1 - r0) * (clipped_end_s - t0) / (t1 - t0),
            });
        }
        if let Some(&(t_last, r_last)) = self.points.last()
            && t_last < end_s
        {
            segments.push(Segment {
                start_s: t_last,
                end_s,
                start_rate_per_s: r_last,
                end_rate_per_s: r_last,
            });
        }
        segments
    }

    /// Requests the curve asks for over `[from_s, to_s)`.
    pub fn area_between(&self, from_s: f64, to_s: f64) -> f64 {
        let before = |t: f64| -> f64 { self.segments(t).iter().map(Segment::area).sum::<f64>() };
        before(to_s) - before(from_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_jump_at_their_time() {
        let curve = RateCurve::new(&[(0.0, 10.0), (2.0, 10.0), (2.0, 50.0)]);
        assert_eq!(curve.rate_at(1.999), 10.0);
        assert_eq!(curve.rate_at(2.0), 50.0);
        assert!((curve.area_between(0.0, 3.0) - 70.0).abs() < 1e-9);
        assert!(curve.segments(3.0).iter().all(|s| s.end_s > s.start_s));
    }

    #[test]
    fn interpolates_and_holds() {
        let curve = RateCurve::new(&[(1.0, 10.0), (3.0, 30.0)]);
        assert_eq!(curve.rate_at(0.0), 10.0);
        assert_eq!(curve.rate_at(2.0), 20.0);
        assert_eq!(curve.rate_at(9.0), 30.0);
        assert_eq!(curve.peak_per_s(), 30.0);
        // 10 over [0,1) + 40 over [1,3) + 30 over [3,4).
        assert!((curve.area_between(0.0, 4.0) - 80.0).abs() < 1e-9);
    }

    #[test]
    fn time_to_area_inverts_the_area() {
        for (r0, r1) in [(0.0, 100.0), (100.0, 0.0), (50.0, 50.0), (10.0, 90.0)] {
            let segment = Segment {
                start_s: 0.0,
                end_s: 2.0,
                start_rate_per_s: r0,
                end_rate_per_s: r1,
            };
            for fraction in [0.0, 0.1, 0.5, 0.9, 1.0] {
                let area = segment.area() * fraction;
                let tau = segment.time_to_area_s(area);
                let partial = Segment {
                    end_s: tau,
                    end_rate_per_s: r0 + (r1 - r0) * tau / 2.0,
                    ..segment
                };
                assert!(
                    (partial.area() - area).abs() < 1e-6,
                    "{r0}->{r1} at {fraction}: τ={tau} area {} vs {area}",
                    partial.area()
                );
            }
        }
    }
}
