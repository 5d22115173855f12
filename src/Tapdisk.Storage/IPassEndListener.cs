namespace Tapdisk.Storage;

/// <summary>Work an <see cref="IoLoop"/> runs after the completions of one pass (an interface: no delegate per pass).</summary>
public interface IPassEndListener
{
    void OnPassEnd();
}
