// test_schedule.cpp: the schedules as data, without MPI: every send has its receive, a simulated run
// completes (no deadlock), activations held stay within the bound, and the bubble with equal F, B, W times is
// (P−1)/(M+P−1) for 1f1b and at most a third of that (in idle time) for zb-h1.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE schedule
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <map>
#include <tuple>

#include "core/error.hpp"
#include "parallel/schedule.hpp"

using namespace strata;

namespace {

int count(const std::vector<std::vector<Action>>& all, Op op) {
  int n = 0;
  for (auto& l : all)
    for (auto& a : l) n += a.op == op;
  return n;
}

// Calls f(spec, tag) for every valid (kind, P ∈ Ps, M, v) the schedule tests cover; returns how many.
template <class F>
int for_each_spec(std::initializer_list<int> Ps, F&& f) {
  int n = 0;
  for (int P : Ps)
    for (int M : {1, 2, 3, 4, 8, 12, 16})
      for (auto kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b, ScheduleKind::interleaved,
                        ScheduleKind::zb_h1})
        for (int v : {1, 2, 3}) {
          if ((kind == ScheduleKind::interleaved) != (v > 1)) continue;
          if (kind == ScheduleKind::interleaved && M % P != 0) continue;
          f(ScheduleSpec{kind, P, M, v}, std::string(schedule_kind_name(kind)) + " P=" + std::to_string(P) +
                                             " M=" + std::to_string(M) + " v=" + std::to_string(v));
          n++;
        }
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_schedule_completes_with_matched_messages_and_bounded_memory) {
  const CostModel unit{1, 1, 1, 0};
  const int checked = for_each_spec({1, 2, 4, 8}, [&](const ScheduleSpec& s, const std::string& tag) {
          const int P = s.P, M = s.M, v = s.v;
          const ScheduleKind kind = s.kind;
          auto all = schedule_build_all(s);
          BOOST_TEST(count(all, Op::send_act) == count(all, Op::recv_act), tag);
          BOOST_TEST(count(all, Op::send_grad) == count(all, Op::recv_grad), tag);
          BOOST_TEST(count(all, Op::send_act) == M * (P * v - 1), tag);
          // A chunk of an interleaved stage is 1/v of the stage's work.
          const double c = 1.0 / v;
          Simulation sim = schedule_simulate(s, all, {c, c, c, 0});
          BOOST_TEST_REQUIRE(sim.completed, tag << ": " << sim.error);
          // Compute per stage: M·v forwards and M·v backwards (B+W, or B and W).
          for (int p = 0; p < P; p++) BOOST_TEST(std::fabs(sim.busy[p] - 3.0 * M) < 1e-9, tag);
          const int peak0 = sim.peak_activations[0];
          int peak = 0;
          for (int x : sim.peak_activations) peak = std::max(peak, x);
          if (kind == ScheduleKind::gpipe) BOOST_TEST(peak0 == M, tag);
          if (kind == ScheduleKind::one_f_one_b) {
            BOOST_TEST(peak0 == std::min(P, M), tag);
            for (int p = 0; p < P; p++) BOOST_TEST(sim.peak_activations[p] == std::min(P - p, M), tag);
          }
          if (kind == ScheduleKind::zb_h1) BOOST_TEST(peak <= P, tag << " peak " << peak);
          if (kind == ScheduleKind::one_f_one_b || kind == ScheduleKind::gpipe)
            BOOST_TEST(std::fabs(sim.bubble_fraction() - double(P - 1) / (M + P - 1)) < 1e-12,
                       tag << " bubble " << sim.bubble_fraction());
          if (kind == ScheduleKind::zb_h1) {
            Simulation ref = schedule_simulate({ScheduleKind::one_f_one_b, P, M, 1},
                                               schedule_build_all({ScheduleKind::one_f_one_b, P, M, 1}), unit);
            // (P−1)(F+B−W) against (P−1)(F+B+W): a third of the idle time once every stage has M ≥ P to
            // overlap; with fewer micro-batches the critical path F…F B…B W alone exceeds that.
            if (M >= P)
              BOOST_TEST(sim.bubble_time() <= ref.bubble_time() / 3 + 1e-9,
                         tag << ": zb-h1 idle " << sim.bubble_time() << " vs 1f1b " << ref.bubble_time());
            BOOST_TEST(sim.bubble_time() <= ref.bubble_time() + 1e-9, tag);
            BOOST_TEST(sim.bubble_fraction() <= ref.bubble_fraction() + 1e-12, tag);
          }
          if (kind == ScheduleKind::interleaved && M >= 2 * P) {
            // Megatron-LM's interleaving divides 1f1b's bubble by v (for equal F, B times).
            Simulation ref = schedule_simulate({ScheduleKind::one_f_one_b, P, M, 1},
                                               schedule_build_all({ScheduleKind::one_f_one_b, P, M, 1}), unit);
            BOOST_TEST(sim.bubble_time() <= ref.bubble_time() / v + 1e-9, tag << ": " << sim.bubble_time()
                                                                              << " vs " << ref.bubble_time());
          }
        });
  BOOST_TEST(checked > 100);
}

// Transports that match messages by order instead of by tag (NCCL's ncclSend/ncclRecv) need every directed
// edge (sender stage, receiver stage, activations or gradients) to be FIFO: the receiver posts its receives in
// the order the sender sends. Messages named by (micro-batch, receiving virtual stage).
BOOST_AUTO_TEST_CASE(every_edge_is_fifo_for_order_matched_transports) {
  const int checked = for_each_spec({2, 3, 4, 8}, [&](const ScheduleSpec& s, const std::string& tag) {
          const int P = s.P;
          auto all = schedule_build_all(s);
          // [grad][from][to] -> messages in order, as sent and as received.
          using Seq = std::vector<std::pair<int, int>>;
          std::map<std::tuple<bool, int, int>, Seq> sent, received;
          for (int st = 0; st < P; st++)
            for (const Action& a : all[st]) {
              const int vs = a.chunk * P + st;
              if (a.op == Op::send_act) sent[{false, st, a.peer}].push_back({a.mb, vs + 1});
              if (a.op == Op::send_grad) sent[{true, st, a.peer}].push_back({a.mb, vs - 1});
              if (a.op == Op::recv_act) received[{false, a.peer, st}].push_back({a.mb, vs});
              if (a.op == Op::recv_grad) received[{true, a.peer, st}].push_back({a.mb, vs});
            }
          BOOST_TEST(sent.size() == received.size(), tag);
          for (auto& [edge, seq] : sent) {
            auto [grad, from, to] = edge;
            BOOST_TEST((seq == received[edge]), tag << (grad ? " gradients " : " activations ") << from << " -> " << to
                                                    << " are received in another order than sent");
          }
        });
  BOOST_TEST(checked > 100);
}

BOOST_AUTO_TEST_CASE(one_f_one_b_warmup_is_p_minus_s_minus_1) {
  ScheduleSpec s{ScheduleKind::one_f_one_b, 4, 8, 1};
  for (int p = 0; p < 4; p++) {
    auto l = schedule_build(s, p);
    int warm = 0;
    for (auto& a : l) {
      if (a.op == Op::backward) break;
      warm += a.op == Op::forward;
    }
    BOOST_TEST(warm == 4 - p - 1 + 1, "stage " << p);  // warmup forwards, then the first steady forward
  }
}

BOOST_AUTO_TEST_CASE(the_simulator_catches_broken_schedules) {
  ScheduleSpec s{ScheduleKind::one_f_one_b, 2, 4, 1};
  auto all = schedule_build_all(s);
  auto missing = all;  // drop stage 1's first receive: its forward has no input
  for (size_t i = 0; i < missing[1].size(); i++)
    if (missing[1][i].op == Op::recv_act) {
      missing[1].erase(missing[1].begin() + long(i));
      break;
    }
  BOOST_TEST(!schedule_simulate(s, missing, {}).completed);
  auto deadlock = all;  // stage 0 waits for a gradient before sending the activation that produces it
  std::vector<Action> d0 = {{Op::recv_grad, 0, 0, 1}, {Op::forward, 0, 0, -1}, {Op::send_act, 0, 0, 1}};
  deadlock[0] = d0;
  Simulation sim = schedule_simulate(s, deadlock, {});
  BOOST_TEST(!sim.completed);
  BOOST_TEST(sim.error.find("deadlock") != std::string::npos, sim.error);
  auto extra = all;  // a send nobody receives
  extra[0].push_back({Op::send_act, 0, 0, 1});
  BOOST_TEST(!schedule_simulate(s, extra, {}).completed);
}

BOOST_AUTO_TEST_CASE(invalid_specs_name_their_values) {
  auto msg = [](ScheduleSpec s) {
    try {
      schedule_build_all(s);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  BOOST_TEST(msg({ScheduleKind::interleaved, 4, 6, 2}).find("(6) to be a multiple of parallel.pipeline (4)") !=
             std::string::npos);
  BOOST_TEST(msg({ScheduleKind::one_f_one_b, 4, 8, 2}).find("virtual_stages = 2") != std::string::npos);
}
