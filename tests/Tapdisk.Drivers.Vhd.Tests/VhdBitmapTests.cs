using CsCheck;
using Xunit;

namespace Tapdisk.Drivers.Vhd.Tests;

public sealed class VhdBitmapTests
{
    private const int Bits = 512;

    [Fact]
    public void SetRange_AnyRange_MatchesBoolModel()
    {
        Gen.Select(Gen.Byte.Array[Bits / 8], Gen.Int[0, Bits]).SelectMany((bytes, first) => Gen.Int[0, Bits - first].Select(count => (bytes, first, count)))
            .Sample(t =>
            {
                bool[] model = ToModel(t.bytes);
                byte[] bitmap = (byte[])t.bytes.Clone();
                VhdBitmap.SetRange(bitmap, t.first, t.count);
                model.AsSpan(t.first, t.count).Fill(true);
                Assert.Equal(model, ToModel(bitmap));

                bitmap = (byte[])t.bytes.Clone();
                model = ToModel(t.bytes);
                VhdBitmap.ClearRange(bitmap, t.first, t.count);
                model.AsSpan(t.first, t.count).Clear();
                Assert.Equal(model, ToModel(bitmap));
            });
    }

    [Fact]
    public void RunLength_AnyStart_MatchesBoolModel()
    {
        // Sparse runs: bytes of 0x00/0xFF with occasional mixed bytes exercise both the byte and the bit path.
        Gen<byte> runByte = Gen.Frequency((4, Gen.Const((byte)0)), (4, Gen.Const((byte)0xFF)), (1, Gen.Byte));
        Gen.Select(runByte.Array[Bits / 8], Gen.Int[0, Bits - 1]).SelectMany((bytes, first) => Gen.Int[1, Bits - first].Select(max => (bytes, first, max)))
            .Sample(t =>
            {
                bool[] model = ToModel(t.bytes);
                int expected = 0;
                while (expected < t.max && model[t.first + expected] == model[t.first])
                {
                    expected++;
                }

                int run = VhdBitmap.RunLength(t.bytes, t.first, t.max, out bool value);
                Assert.Equal(model[t.first], value);
                Assert.Equal(expected, run);
                Assert.Equal(model.AsSpan(t.first, t.max).IndexOf(!model[t.first]) < 0 && value, VhdBitmap.AllSet(t.bytes, t.first, t.max));
            });
    }

    [Fact]
    public void Set_Sector_IsMostSignificantBitFirst()
    {
        byte[] bitmap = new byte[2];
        VhdBitmap.Set(bitmap, 0);
        VhdBitmap.Set(bitmap, 9);
        Assert.Equal(new byte[] { 0x80, 0x40 }, bitmap);
    }

    private static bool[] ToModel(byte[] bytes)
    {
        bool[] model = new bool[bytes.Length * 8];
        for (int i = 0; i < model.Length; i++)
        {
            model[i] = (bytes[i / 8] & (0x80 >> (i % 8))) != 0;
        }

        return model;
    }
}
