// schedule.cpp: compute orders of gpipe, 1f1b, Megatron-LM's interleaved 1f1b and zb-h1, the communication
// around them, and the dataflow simulator that checks and times any set of lists.
#include "parallel/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "core/error.hpp"

namespace strata {

ScheduleKind schedule_kind_from_name(const std::string& n) {
  if (n == "gpipe") return ScheduleKind::gpipe;
  if (n == "1f1b") return ScheduleKind::one_f_one_b;
  if (n == "interleaved") return ScheduleKind::interleaved;
  if (n == "zb-h1") return ScheduleKind::zb_h1;
  fail("parallel.schedule = \"", n, "\" is not one of gpipe, 1f1b, interleaved, zb-h1");
}

const char* schedule_kind_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::gpipe: return "gpipe";
    case ScheduleKind::one_f_one_b: return "1f1b";
    case ScheduleKind::interleaved: return "interleaved";
    case ScheduleKind::zb_h1: return "zb-h1";
  }
  return "?";
}

const char* op_name(Op op) {
  switch (op) {
    case Op::forward: return "F";
    case Op::backward: return "B";
    case Op::backward_input: return "b";
    case Op::backward_weight: return "W";
    case Op::send_act: return "send_act";
    case Op::recv_act: return "recv_act";
    case Op::send_grad: return "send_grad";
    case Op::recv_grad: return "recv_grad";
  }
  return "?";
}

void schedule_validate(const ScheduleSpec& s) {
  STRATA_CHECK(s.P >= 1 && s.M >= 1 && s.v >= 1, "schedule: pipeline ", s.P, ", micro-batches ", s.M,
               " and virtual stages ", s.v, " must all be >= 1");
  if (s.kind == ScheduleKind::interleaved) {
    STRATA_CHECK(s.v >= 2, "schedule: interleaved needs parallel.virtual_stages >= 2, got ", s.v);
    STRATA_CHECK(s.M % s.P == 0, "schedule: interleaved needs the micro-batch count (", s.M,
                 ") to be a multiple of parallel.pipeline (", s.P, ")");
  } else {
    STRATA_CHECK(s.v == 1, "schedule: parallel.virtual_stages = ", s.v, " needs parallel.schedule = \"interleaved\"");
  }
}

namespace {

Action compute(Op op, int mb, int chunk = 0) { return {op, mb, chunk, -1}; }

std::vector<Action> order_gpipe(const ScheduleSpec& s) {
  std::vector<Action> a;
  for (int m = 0; m < s.M; m++) a.push_back(compute(Op::forward, m));
  for (int m = 0; m < s.M; m++) a.push_back(compute(Op::backward, m));
  return a;
}

// Warmup of P − s − 1 forwards, then one forward one backward, then the remaining backwards.
std::vector<Action> order_1f1b(const ScheduleSpec& s, int stage) {
  std::vector<Action> a;
  const int warm = std::min(s.P - stage - 1, s.M);
  for (int m = 0; m < warm; m++) a.push_back(compute(Op::forward, m));
  for (int i = 0; i < s.M - warm; i++) {
    a.push_back(compute(Op::forward, warm + i));
    a.push_back(compute(Op::backward, i));
  }
  for (int m = s.M - warm; m < s.M; m++) a.push_back(compute(Op::backward, m));
  return a;
}

// Megatron-LM's interleaved 1F1B (forward_backward_pipelining_with_interleaving): virtual micro-batch k
// maps to chunk (k mod P·v) / P (reversed for backwards) and micro-batch (k / (P·v))·P + k mod P.
std::vector<Action> order_interleaved(const ScheduleSpec& s, int stage) {
  const int P = s.P, v = s.v, total = s.M * v;
  auto chunk = [&](int k, bool fwd) {
    int c = (k % (P * v)) / P;
    return fwd ? c : v - 1 - c;
  };
  auto mb = [&](int k) { return (k / (P * v)) * P + k % P; };
  int warm = s.M == P ? total : std::min((P - stage - 1) * 2 + (v - 1) * P, total);
  std::vector<Action> a;
  for (int k = 0; k < warm; k++) a.push_back(compute(Op::forward, mb(k), chunk(k, true)));
  for (int k = 0; k < total - warm; k++) {
    a.push_back(compute(Op::forward, mb(warm + k), chunk(warm + k, true)));
    a.push_back(compute(Op::backward, mb(k), chunk(k, false)));
  }
  for (int k = total - warm; k < total; k++) a.push_back(compute(Op::backward, mb(k), chunk(k, false)));
  return a;
}

// ZB-H1 (Qi et al. 2023): 1f1b's order of F and B (warmup P − s − 1), with the backward split into B and W and
// stage s deferring its W passes by s micro-batches, so the W's fill the cooldown bubbles. With equal F, B, W
// times and M ≥ P every stage idles P − 1 units against 1f1b's 3(P − 1), and no stage holds more than P
// micro-batches (1f1b's peak, on its stage 0).
std::vector<Action> order_zb_h1(const ScheduleSpec& s, int stage) {
  std::vector<Action> a;
  const int warm = std::min(s.P - stage - 1, s.M), delay = stage;
  int nw = 0;
  auto after_b = [&](int k) {
    if (k - delay >= nw) a.push_back(compute(Op::backward_weight, nw++));
  };
  for (int m = 0; m < warm; m++) a.push_back(compute(Op::forward, m));
  for (int k = 0; k < s.M - warm; k++) {
    a.push_back(compute(Op::forward, warm + k));
    a.push_back(compute(Op::backward_input, k));
    after_b(k);
  }
  for (int k = s.M - warm; k < s.M; k++) {
    a.push_back(compute(Op::backward_input, k));
    after_b(k);
  }
  while (nw < s.M) a.push_back(compute(Op::backward_weight, nw++));
  return a;
}

// Wraps each compute action with its receive before and its send after.
std::vector<Action> with_comm(const ScheduleSpec& s, int stage, const std::vector<Action>& order) {
  const int nvs = s.P * s.v;
  std::vector<Action> a;
  for (const Action& c : order) {
    const int vs = c.chunk * s.P + stage;
    const int prev = (vs - 1 + s.P) % s.P, next = (vs + 1) % s.P;
    if (c.op == Op::forward) {
      if (vs > 0) a.push_back({Op::recv_act, c.mb, c.chunk, prev});
      a.push_back(c);
      if (vs < nvs - 1) a.push_back({Op::send_act, c.mb, c.chunk, next});
    } else if (c.op == Op::backward || c.op == Op::backward_input) {
      if (vs < nvs - 1) a.push_back({Op::recv_grad, c.mb, c.chunk, next});
      a.push_back(c);
      if (vs > 0) a.push_back({Op::send_grad, c.mb, c.chunk, prev});
    } else {
      a.push_back(c);
    }
  }
  return a;
}

}  // namespace

std::vector<std::vector<Action>> schedule_build_all(const ScheduleSpec& s) {
  schedule_validate(s);
  std::vector<std::vector<Action>> orders(s.P);
  for (int p = 0; p < s.P; p++)
    orders[p] = s.kind == ScheduleKind::gpipe         ? order_gpipe(s)
                : s.kind == ScheduleKind::one_f_one_b ? order_1f1b(s, p)
                : s.kind == ScheduleKind::zb_h1       ? order_zb_h1(s, p)
                                                      : order_interleaved(s, p);
  for (int p = 0; p < s.P; p++) orders[p] = with_comm(s, p, orders[p]);
  return orders;
}

std::vector<Action> schedule_build(const ScheduleSpec& s, int stage) { return schedule_build_all(s)[stage]; }

double Simulation::bubble_time() const {
  double idle = 0;
  for (double b : busy) idle += makespan - b;
  return busy.empty() ? 0 : idle / double(busy.size());
}

double Simulation::bubble_fraction() const { return makespan > 0 ? bubble_time() / makespan : 0; }

Simulation schedule_simulate(const ScheduleSpec& s, const std::vector<std::vector<Action>>& lists,
                             const CostModel& cost) {
  const int P = s.P, nvs = s.P * s.v;
  Simulation sim;
  sim.busy.assign(P, 0);
  sim.peak_activations.assign(P, 0);
  sim.timeline.assign(P, {});
  // Messages in flight: (is_grad, micro-batch, destination virtual stage) → time available.
  std::map<std::tuple<int, int, int>, double> msgs;
  std::vector<size_t> pc(P, 0);
  std::vector<double> clock(P, 0);
  std::vector<int> held(P, 0);
  // Per stage: what has happened to (mb, chunk): bit 0 F done, 1 input received, 2 grad received, 3 B done, 4 W done.
  std::vector<std::map<std::pair<int, int>, int>> state(P);
  auto bad = [&](int p, const Action& a, const std::string& why) {
    sim.error = str("stage ", p, " action ", pc[p], " (", op_name(a.op), " mb ", a.mb, " chunk ", a.chunk, "): ", why);
  };
  bool progress = true;
  while (progress && sim.error.empty()) {
    progress = false;
    for (int p = 0; p < P && sim.error.empty(); p++) {
      while (pc[p] < lists[p].size() && sim.error.empty()) {
        const Action& a = lists[p][pc[p]];
        const int vs = a.chunk * P + p;
        int& st = state[p][{a.mb, a.chunk}];
        if (a.op == Op::send_act || a.op == Op::send_grad) {
          const bool g = a.op == Op::send_grad;
          const int dest = g ? vs - 1 : vs + 1;
          if (dest < 0 || dest >= nvs || a.peer != dest % P) {
            bad(p, a, "sends to a stage that does not exist or to the wrong peer");
            break;
          }
          if (!(st & (g ? 8 : 1))) {
            bad(p, a, "sends before computing what it sends");
            break;
          }
          auto key = std::make_tuple(int(g), a.mb, dest);
          if (msgs.count(key)) {
            bad(p, a, "sends the same message twice");
            break;
          }
          msgs[key] = clock[p] + cost.comm;
          sim.sent_at[key] = clock[p];
        } else if (a.op == Op::recv_act || a.op == Op::recv_grad) {
          const bool g = a.op == Op::recv_grad;
          auto it = msgs.find(std::make_tuple(int(g), a.mb, vs));
          if (it == msgs.end()) break;  // blocked until the sender gets there
          if (a.peer != (g ? vs + 1 : vs - 1 + P) % P) {
            bad(p, a, "receives from the wrong peer");
            break;
          }
          clock[p] = std::max(clock[p], it->second);
          msgs.erase(it);
          st |= g ? 4 : 2;
        } else {
          double d = 0;
          if (a.op == Op::forward) {
            if (vs > 0 && !(st & 2)) {
              bad(p, a, "forward without its input");
              break;
            }
            d = cost.F;
            st |= 1;
            sim.peak_activations[p] = std::max(sim.peak_activations[p], ++held[p]);
          } else if (a.op == Op::backward || a.op == Op::backward_input) {
            if (!(st & 1) || (vs < nvs - 1 && !(st & 4))) {
              bad(p, a, "backward without its forward or its output gradient");
              break;
            }
            d = a.op == Op::backward ? cost.B + cost.W : cost.B;
            st |= a.op == Op::backward ? 8 | 16 : 8;
            if (a.op == Op::backward) held[p]--;
          } else {
            if (!(st & 8) || (st & 16)) {
              bad(p, a, "weight gradient without its input gradient, or twice");
              break;
            }
            d = cost.W;
            st |= 16;
            held[p]--;
          }
          sim.timeline[p].push_back({clock[p], clock[p] + d, a});
          clock[p] += d;
          sim.busy[p] += d;
        }
        pc[p]++;
        progress = true;
      }
    }
  }
  if (!sim.error.empty()) return sim;
  for (int p = 0; p < P; p++) {
    if (pc[p] < lists[p].size()) {
      const Action& a = lists[p][pc[p]];
      sim.error = str("deadlock: stage ", p, " waits at action ", pc[p], " (", op_name(a.op), " mb ", a.mb,
                      " chunk ", a.chunk, ")");
      return sim;
    }
    for (auto& [k, st] : state[p])
      if (st != (1 | 8 | 16 | (k.second * P + p > 0 ? 2 : 0) | (k.second * P + p < nvs - 1 ? 4 : 0)))
        sim.error = str("stage ", p, " micro-batch ", k.first, " chunk ", k.second, " is incomplete (state ", st, ")");
    int nmb = 0;
    for (auto& kv : state[p]) nmb += kv.first.first >= 0;
    if (nmb != s.M * s.v) sim.error = str("stage ", p, " computes ", nmb, " micro-batch chunks, expected ", s.M * s.v);
  }
  if (!msgs.empty()) sim.error = str(msgs.size(), " message(s) sent but never received");
  if (!sim.error.empty()) return sim;
  sim.completed = true;
  for (double c : clock) sim.makespan = std::max(sim.makespan, c);
  return sim;
}

std::string schedule_render(const ScheduleSpec& s, const Simulation& sim, const CostModel& cost) {
  std::ostringstream os;
  const double unit = std::min({cost.F, cost.B, cost.W});
  const int cols = int(std::ceil(sim.makespan / unit - 1e-9));
  const int w = s.M * s.v > 99 ? 5 : s.M * s.v > 9 ? 4 : 3;
  os << "schedule " << schedule_kind_name(s.kind) << ": " << s.P << " stages, " << s.M << " micro-batches";
  if (s.v > 1) os << ", " << s.v << " chunks per stage";
  os << "; cost F " << cost.F << ", B " << cost.B << ", W " << cost.W << " (one column = " << unit << ")\n";
  for (int p = 0; p < s.P; p++) {
    std::vector<std::string> row(cols, std::string(w, '.'));
    for (auto& sl : sim.timeline[p]) {
      std::string lab = op_name(sl.a.op) + std::to_string(sl.a.mb);
      if (s.v > 1) lab += "abcdefgh"[sl.a.chunk % 8];
      const int c0 = int(std::lround(sl.start / unit)), c1 = int(std::lround(sl.end / unit));
      for (int c = c0; c < c1 && c < cols; c++) row[c] = (lab + std::string(w, ' ')).substr(0, w - 1) + " ";
    }
    os << "stage " << p << (p < 10 ? "  |" : " |");
    for (auto& c : row) os << c;
    os << "\n";
  }
  char line[256];
  std::snprintf(line, sizeof line,
                "makespan %.2f, bubble %.2f per stage = %.1f%% of the makespan; peak activations held on stage 0: %d "
                "micro-batch chunks\n",
                sim.makespan, sim.bubble_time(), 100 * sim.bubble_fraction(), sim.peak_activations[0]);
  os << line;
  return os.str();
}

}  // namespace strata
