// Unit tests of the key rotation policy (ages, due dates, overdue) used by envelopectl keys list
// --check and audit: the overdue path cannot be reached in integration tests without faking the
// clock, so it is tested here on fixed times.
#include "envelopefs/key_policy.h"

#include <gtest/gtest.h>

namespace envelopefs {
namespace {

constexpr int64_t kT0 = 1'780'000'000;  // 2026-05-28T...

TEST(KeyPolicyTest, FreshActiveKeyIsNotOverdue) {
  auto s = EvaluateKeyPolicy({{7, 1, kT0, KekState::kActive}}, 90, kT0 + 10);
  ASSERT_EQ(1u, s.size());
  EXPECT_EQ(0, s[0].age_days);
  ASSERT_TRUE(s[0].rotation_due.has_value());
  EXPECT_EQ(kT0 + 90 * kSecondsPerDay, *s[0].rotation_due);
  EXPECT_FALSE(s[0].overdue);
  EXPECT_FALSE(RotationOverdue(s));
}

TEST(KeyPolicyTest, DueInstantIsNotYetOverdueOneSecondLaterIs) {
  std::vector<KekInfo> keks = {{7, 1, kT0, KekState::kActive}};
  EXPECT_FALSE(RotationOverdue(EvaluateKeyPolicy(keks, 1, kT0 + kSecondsPerDay)));
  auto late = EvaluateKeyPolicy(keks, 1, kT0 + kSecondsPerDay + 1);
  EXPECT_TRUE(RotationOverdue(late));
  EXPECT_EQ(1, late[0].age_days);
}

TEST(KeyPolicyTest, OnlyTheActiveVersionHasADueDate) {
  std::vector<KekInfo> keks = {{7, 1, kT0, KekState::kRetired},
                               {8, 2, kT0 + 100 * kSecondsPerDay, KekState::kDecryptOnly},
                               {9, 3, kT0 + 200 * kSecondsPerDay, KekState::kActive}};
  auto s = EvaluateKeyPolicy(keks, 30, kT0 + 210 * kSecondsPerDay);
  ASSERT_EQ(3u, s.size());
  EXPECT_EQ(210, s[0].age_days);
  EXPECT_FALSE(s[0].rotation_due.has_value());
  EXPECT_FALSE(s[0].overdue);  // old, but not active: rewrap and retire are separate matters
  EXPECT_FALSE(s[1].rotation_due.has_value());
  EXPECT_EQ(10, s[2].age_days);
  EXPECT_FALSE(s[2].overdue);
  EXPECT_TRUE(RotationOverdue(EvaluateKeyPolicy(keks, 30, kT0 + 231 * kSecondsPerDay)));
}

TEST(KeyPolicyTest, DaysToRotationCountDownAndGoNegativeOnceOverdue) {
  std::vector<KekInfo> keks = {{7, 1, kT0, KekState::kDecryptOnly}, {8, 2, kT0, KekState::kActive}};
  auto s = EvaluateKeyPolicy(keks, 30, kT0 + 10);
  EXPECT_FALSE(s[0].days_to_rotation.has_value());
  ASSERT_TRUE(s[1].days_to_rotation.has_value());
  EXPECT_EQ(29, *s[1].days_to_rotation) << "29 days and some hours left: whole days";
  EXPECT_EQ(0, *EvaluateKeyPolicy(keks, 30, kT0 + 30 * kSecondsPerDay)[1].days_to_rotation);
  auto late = EvaluateKeyPolicy(keks, 30, kT0 + 30 * kSecondsPerDay + 1);
  EXPECT_EQ(-1, *late[1].days_to_rotation) << "a second overdue is the first day overdue";
  EXPECT_TRUE(late[1].overdue);
  EXPECT_EQ(-10, *EvaluateKeyPolicy(keks, 30, kT0 + 40 * kSecondsPerDay)[1].days_to_rotation);
}

TEST(KeyPolicyTest, CreationInTheFutureHasAgeZero) {
  auto s = EvaluateKeyPolicy({{7, 1, kT0, KekState::kActive}}, 90, kT0 - 5 * kSecondsPerDay);
  EXPECT_EQ(0, s[0].age_days);
  EXPECT_FALSE(s[0].overdue);
}

TEST(KeyPolicyTest, FormatsUtc) {
  EXPECT_EQ("1970-01-01T00:00:00Z", FormatUtc(0));
  EXPECT_EQ("2026-11-22T08:15:30Z", FormatUtc(1795335330));
}

}  // namespace
}  // namespace envelopefs
