using System.Diagnostics;

namespace Tapdisk.Storage;

/// <summary>A reusable, ordered list of extents that merges adjacent ranges with equal flags.</summary>
public sealed class ExtentList
{
    private ImageExtent[] _items = new ImageExtent[16];
    private int _count;

    public int Count => _count;

    public ImageExtent this[int index] => index < _count ? _items[index] : throw new ArgumentOutOfRangeException(nameof(index));

    /// <summary>Total bytes covered.</summary>
    public long LengthBytes => _count == 0 ? 0 : _items[_count - 1].OffsetBytes + _items[_count - 1].LengthBytes - _items[0].OffsetBytes;

    public void Clear() => _count = 0;

    public void Add(long offsetBytes, long lengthBytes, ExtentFlags flags)
    {
        if (lengthBytes <= 0)
        {
            return;
        }

        if (_count > 0)
        {
            ref ImageExtent last = ref _items[_count - 1];
            Debug.Assert(last.OffsetBytes + last.LengthBytes == offsetBytes, "extents must be added in order without gaps");
            if (last.Flags == flags)
            {
                last = last with { LengthBytes = last.LengthBytes + lengthBytes };
                return;
            }
        }

        if (_count == _items.Length)
        {
            Array.Resize(ref _items, _items.Length * 2);
        }

        _items[_count++] = new ImageExtent(offsetBytes, lengthBytes, flags);
    }

    public ReadOnlySpan<ImageExtent> AsSpan() => _items.AsSpan(0, _count);
}
